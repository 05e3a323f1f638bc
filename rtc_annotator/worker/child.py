"""The job child process: runs a job's pipelines and streams outputs to the parent.

Started by :class:`~rtc_annotator.worker.runner.JobRunner` with the ``spawn`` start method (a
fresh interpreter: no inherited CUDA context, no inherited locks). Messages to the parent, over
a one-way :func:`multiprocessing.Pipe`, are plain tuples of builtins:

* ``("started", pipeline)``
* ``("outputs", pipeline, [PipelineOutput.to_dict(), ...])`` -- small batches, as produced
* ``("pipeline_done", pipeline, count, seconds)``
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
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rtc_annotator.errors import RtcAnnotatorError


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


def internal_error(pipeline: str, exc: BaseException) -> dict[str, str]:
    text = f"{pipeline}: {type(exc).__name__}: {exc}".replace("\n", " ")
    return {"code": "PIPELINE_ERROR", "message": text[:300],
            "hint": "see the worker log for this job id"}


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

    logs.configure(spec.log_level)
    context = RunContext(
        job_id=spec.job_id, profile=spec.profile,
        models_dir=Path(spec.models_dir) if spec.models_dir else None,
        device="cuda" if spec.gpu_index is not None else "cpu", extra=spec.extra,
        catalog=spec.catalog, cache_dir=Path(spec.cache_dir) if spec.cache_dir else None,
        threads=spec.threads,
    )
    registry = Registry(spec.registry)
    try:
        for name in spec.pipelines:
            _run_one(conn, spec, registry, name, context)
        conn.send(("done",))
    finally:
        conn.close()


def _run_one(conn: Connection, spec: JobSpec, registry: Any, name: str, context: Any) -> None:
    """Run one pipeline and stream its outputs; a failure is reported, not raised."""
    try:
        pipeline = registry.get(name)
        options = pipeline.parse_options(spec.options.get(name))
        conn.send(("started", name))
        started = last_send = time.monotonic()
        count = 0
        batch: list[dict[str, Any]] = []
        for output in pipeline.run(Path(spec.video), options, context):
            batch.append(output.to_dict())
            count += 1
            now = time.monotonic()
            if len(batch) >= spec.batch_max or now - last_send >= spec.flush_s:
                conn.send(("outputs", name, batch))
                batch = []
                last_send = now
        if batch:
            conn.send(("outputs", name, batch))
        conn.send(("pipeline_done", name, count, time.monotonic() - started))
    except RtcAnnotatorError as exc:
        conn.send(("failed", name, exc.envelope().model_dump(), traceback.format_exc()))
    except Exception as exc:
        conn.send(("failed", name, internal_error(name, exc), traceback.format_exc()))
