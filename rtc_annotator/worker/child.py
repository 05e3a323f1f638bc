"""The job child process: runs a job's pipelines and streams outputs to the parent.

Started by :class:`~rtc_annotator.worker.runner.JobRunner` with the ``spawn`` start method (a
fresh interpreter: no inherited CUDA context, no inherited locks). The pipelines run side by
side (:mod:`rtc_annotator.worker.execute`); a failed pipeline does not stop the others, so its
``failed`` message may be followed by other pipelines' outputs. Messages to the parent, over
a one-way :func:`multiprocessing.Pipe`, are plain tuples of builtins:

* ``("started", pipeline)``
* ``("outputs", pipeline, [PipelineOutput.to_dict(), ...])`` -- small batches, as produced
* ``("pipeline_done", pipeline, count, seconds, stats)``: ``stats`` is what the pipeline put in
  ``context.stats[pipeline]`` (e.g. ``{"gate": {...}}``), else empty
* ``("failed", pipeline, {code, message, hint}, traceback_text)``: that pipeline failed; the
  job's other pipelines still run (their results are kept), the job ends failed
* ``("done",)``

The child's stdout is its stderr: libraries that print (ultralytics) never write into the
output of the command that started the job (``annotate --json``). ``threads`` caps the model
libraries' CPU threads (``[worker] threads_per_job``).

A batch is sent when it holds ``batch_max`` outputs or when ``flush_s`` passed since the last
send, so sparse outputs (a scene every minute) go out at once and dense ones are batched.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


@dataclass
class JobSpec:
    """Everything the child needs, picklable."""

    job_id: str
    """Job id, for logs."""
    video: str
    """Local path of the video."""
    pipelines: list[str]
    """Pipelines to run, in order."""
    profile: str
    """Model profile."""
    options: dict[str, dict[str, Any]]
    """Options per pipeline name."""
    registry: dict[str, str]
    """Pipeline name -> ``module:Class``."""
    models_dir: str | None = None
    """``[worker] models_dir``."""
    gpu_index: int | None = None
    """GPU of this slot (exported as CUDA_VISIBLE_DEVICES), None for CPU."""
    log_level: str = "WARNING"
    """Log level of the parent."""
    batch_max: int = 64
    """Most outputs per message."""
    flush_s: float = 0.25
    """Send a partial batch when this long passed since the last send."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Passed to RunContext.extra."""
    catalog: Any = None
    """The worker's model :class:`~rtc_annotator.pipelines.models.Catalog`."""
    cache_dir: str | None = None
    """Writable dir for the libraries' settings (RunContext.cache_dir)."""
    threads: int | None = None
    """CPU threads for the model libraries (None: their default)."""

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def child_main(conn: Connection, spec: JobSpec) -> None:
    """Entry point of the job process."""
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if spec.gpu_index is not None:  # the parent's entry: a UUID or MIG id stays one
        from rtc_annotator.pipelines.gpu import cuda_visible_entry

        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_visible_entry(
            spec.gpu_index, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if spec.threads is not None:
        for var in THREAD_VARS:
            os.environ[var] = str(spec.threads)
    from rtc_annotator import logs
    from rtc_annotator.pipelines.base import RunContext
    from rtc_annotator.pipelines.registry import Registry
    from rtc_annotator.worker.execute import internal_error, run_pipelines

    logs.configure(spec.log_level)
    context = RunContext(
        job_id=spec.job_id, profile=spec.profile,
        models_dir=Path(spec.models_dir) if spec.models_dir else None,
        device="cuda" if spec.gpu_index is not None else "cpu", extra=spec.extra,
        catalog=spec.catalog, cache_dir=Path(spec.cache_dir) if spec.cache_dir else None,
        threads=spec.threads,
    )
    registry = Registry(spec.registry)
    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with lock:  # pipelines run in threads; one message on the pipe at a time
            conn.send(message)

    try:
        run_pipelines(send, Path(spec.video), spec.pipelines, spec.options, registry, context,
                      batch_max=spec.batch_max, flush_s=spec.flush_s)
        send(("done",))
    except Exception as exc:  # a bug outside any pipeline: still one failure message
        send(("failed", "(setup)", internal_error("(setup)", None, exc),
              traceback.format_exc()))
    finally:
        conn.close()

