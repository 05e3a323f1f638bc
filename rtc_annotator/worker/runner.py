"""The local job runner: job slots, a FIFO queue, one child process per job, cancellation.

:class:`JobRunner` accepts jobs with :meth:`JobRunner.submit` and returns a :class:`JobHandle`.
A job waits in a FIFO queue (``queue_position`` 1, 2, ...) until a slot is free (default one per
GPU, 1 on a CPU-only machine, ``[worker] job_slots`` or the ``slots`` argument to override), then
runs in a child process (:mod:`rtc_annotator.worker.child`, ``spawn`` start method) that streams
:class:`PipelineOutput` batches back as they are produced. The parent never blocks its event
loop: pipe reads happen in a small thread pool owned by the runner.

``cancel()`` stops a queued job at once, and a running one by terminating its process
(SIGTERM, then SIGKILL after ``kill_grace_s``) so its GPU memory is freed with the process.

Every failure -- bad request, pipeline error, child crash, spawn failure -- goes through
:meth:`JobRunner.job_failed`, which records one :class:`ErrorEnvelope` on the job.

Job states (:class:`JobStatus`, one logged setter, illegal transitions raise)::

    QUEUED -> RUNNING -> COMPLETED | FAILED | CANCELLED
    QUEUED -> FAILED | CANCELLED
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from rtc_annotator.config import Settings
from rtc_annotator.errors import ErrorEnvelope, RtcAnnotatorError
from rtc_annotator.logs import get_logger
from rtc_annotator.pipelines.base import PipelineOutput, check_profile
from rtc_annotator.pipelines.registry import DEFAULT_REGISTRY, Registry
from rtc_annotator.worker.child import JobSpec, child_main
from rtc_annotator.worker.slots import Slot, default_slots

log = get_logger(__name__)


class RunnerClosed(RtcAnnotatorError):
    """The runner is shutting down and takes no new jobs."""

    code = "WORKER_DRAINING"
    default_hint = "submit the job to another worker"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


_TERMINAL = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
_ALLOWED: dict[JobStatus, set[JobStatus]] = {
    JobStatus.QUEUED: {JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED},
    JobStatus.RUNNING: {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED},
}


class IllegalTransition(RuntimeError):
    pass


@dataclass
class JobResult:
    """How a job ended."""

    job_id: str
    """The job."""
    status: JobStatus
    """completed, failed or cancelled."""
    counts: dict[str, int] = field(default_factory=dict)
    """Outputs per pipeline."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per pipeline, plus ``queued`` (waiting for a slot) and ``total`` (running)."""
    error: ErrorEnvelope | None = None
    """Why it failed (None unless failed)."""
    pipeline: str | None = None
    """The pipeline that failed, if one did."""
    failures: dict[str, ErrorEnvelope] = field(default_factory=dict)
    """Every pipeline that failed, with its error (the others of the job still ran)."""
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Figures a pipeline reported for the summary, e.g. ``{"ocr": {"gate": {...}}}``."""


class JobHandle:
    """A submitted job: stream its outputs, wait for it, cancel it."""

    def __init__(self, runner: JobRunner, job_id: str, video: Path, pipelines: list[str],
                 profile: str, options: dict[str, dict[str, Any]]) -> None:
        self.job_id = job_id
        self.video = video
        self.pipelines = pipelines
        self.profile = profile
        self.options = options
        self.pid: int | None = None
        """Process id of the job's child while it runs (kept after it ended, for checks)."""
        self.counts: dict[str, int] = {p: 0 for p in pipelines}
        self.timings: dict[str, float] = {}
        self.error: ErrorEnvelope | None = None
        self.failed_pipeline: str | None = None
        self.failures: dict[str, ErrorEnvelope] = {}
        self.stats: dict[str, dict[str, Any]] = {}
        self._runner = runner
        self._status = JobStatus.QUEUED
        self._batches: asyncio.Queue[list[PipelineOutput] | None] = asyncio.Queue()
        self._done = asyncio.Event()
        self._cancel_requested = False
        self._child_done = False
        self._submitted = time.monotonic()
        self._log = get_logger(__name__, job=job_id)

    @property
    def status(self) -> JobStatus:
        return self._status

    def _set_status(self, new: JobStatus) -> None:
        if new not in _ALLOWED.get(self._status, set()):
            raise IllegalTransition(f"job {self.job_id}: {self._status.value} -> {new.value}")
        self._log.info("job state", ctx={"from": self._status.value, "to": new.value})
        self._status = new

    @property
    def queue_position(self) -> int:
        """1-based position in the local queue while waiting; 0 once it runs or ended."""
        return self._runner.position(self)

    async def outputs(self) -> AsyncIterator[list[PipelineOutput]]:
        """Batches of outputs as the child produces them; ends when the job ends."""
        while True:
            batch = await self._batches.get()
            if batch is None:
                self._batches.put_nowait(None)  # later iterations end too
                return
            yield batch

    async def wait(self) -> JobResult:
        await self._done.wait()
        return self.result()

    def result(self) -> JobResult:
        return JobResult(self.job_id, self._status, dict(self.counts), dict(self.timings),
                         self.error, self.failed_pipeline, dict(self.failures),
                         dict(self.stats))

    async def cancel(self) -> None:
        """Cancel: drop it from the queue, or end its process; returns once it has ended."""
        await self._runner.cancel(self)

    def _finish(self) -> None:
        self._batches.put_nowait(None)
        self._done.set()


class JobRunner:
    """Runs jobs locally in child processes, ``slots`` at a time."""

    def __init__(self, settings: Settings, slots: int | None = None, *,
                 registry: Registry | None = None, kill_grace_s: float = 2.0,
                 batch_max: int = 64, flush_s: float = 0.25) -> None:
        self.settings = settings
        self.registry = registry or DEFAULT_REGISTRY
        self.slots: list[Slot] = default_slots(settings, slots)
        self.kill_grace_s = kill_grace_s
        self.batch_max = batch_max
        self.flush_s = flush_s
        self._free: deque[Slot] = deque(self.slots)
        self._queue: deque[JobHandle] = deque()
        self._running: dict[str, tuple[JobHandle, BaseProcess | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._ctx = multiprocessing.get_context("spawn")
        self._pool = ThreadPoolExecutor(max_workers=len(self.slots) + 1,
                                        thread_name_prefix="job-pipe")

    # ------------------------------------------------------------------ public

    @property
    def load(self) -> int:
        """Jobs running now."""
        return len(self._running)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def position(self, handle: JobHandle) -> int:
        try:
            return self._queue.index(handle) + 1
        except ValueError:
            return 0

    async def submit(self, job_id: str, video: Path, pipelines: list[str], profile: str,
                     options: Mapping[str, Any] | None = None) -> JobHandle:
        """Queue a job. Invalid jobs come back already failed (see :meth:`job_failed`)."""
        if self._closing:
            raise RunnerClosed("this worker is shutting down and takes no new jobs")
        names = list(dict.fromkeys(pipelines))
        raw = dict(options or {})
        handle = JobHandle(self, job_id, Path(video), names,
                           profile, {k: dict(v or {}) for k, v in raw.items()})
        try:
            self._validate(handle, raw)
        except RtcAnnotatorError as exc:
            self.job_failed(handle, exc.envelope())
            handle._finish()
            return handle
        self._queue.append(handle)
        handle._log.info("job queued", ctx={"pipelines": ",".join(names), "profile": profile,
                                           "position": len(self._queue)})
        self._pump()
        return handle

    async def cancel(self, handle: JobHandle) -> None:
        if handle.status in _TERMINAL:
            return
        handle._cancel_requested = True
        if handle in self._queue:
            self._queue.remove(handle)
            handle._set_status(JobStatus.CANCELLED)
            handle._finish()
            return
        entry = self._running.get(handle.job_id)
        if entry is not None and entry[1] is not None:
            await self._stop_process(handle, entry[1])
        await handle._done.wait()

    async def close(self, grace_s: float = 0.0) -> None:
        """Stop taking jobs; cancel queued ones; give running ones ``grace_s``, then cancel."""
        self._closing = True
        for handle in list(self._queue):
            await self.cancel(handle)
        running = [h for h, _ in self._running.values()]
        if running and grace_s > 0:
            await asyncio.wait([asyncio.ensure_future(h.wait()) for h in running],
                               timeout=grace_s)
        for handle in running:
            await self.cancel(handle)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=False)

    async def __aenter__(self) -> JobRunner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def job_failed(self, handle: JobHandle, error: ErrorEnvelope,
                   pipeline: str | None = None, detail: str | None = None) -> None:
        """THE failure path: record one error envelope on the job and mark it failed."""
        handle.error = error
        handle.failed_pipeline = pipeline
        handle._set_status(JobStatus.FAILED)
        handle._log.warning("job failed", ctx={"code": error.code, "pipeline": pipeline,
                                              "message": error.message})
        if detail:
            handle._log.info("job failure detail\n%s", detail)

    # ------------------------------------------------------------------ internals

    def _validate(self, handle: JobHandle, raw: Mapping[str, Any]) -> None:
        from rtc_annotator.pipelines.base import OptionsError, PipelineUnavailable, VideoError

        if not handle.pipelines:
            raise OptionsError("no pipelines requested",
                               hint=f"choose from {', '.join(self.registry.names())}")
        check_profile(handle.profile)
        for key, value in raw.items():
            if key not in handle.pipelines:
                raise OptionsError(f"options given for {key!r}, which is not in this job",
                                   hint="key options by the name of a requested pipeline")
            if value is not None and not isinstance(value, Mapping):
                raise OptionsError(f"options of {key} must be a mapping")
        for name in handle.pipelines:
            try:
                pipeline = self.registry.get(name)
            except PipelineUnavailable:
                continue  # a plugin that does not load: the child fails it alone, others run
            pipeline.parse_options(handle.options.get(name))
        if not handle.video.is_file():
            raise VideoError(f"video not found: {handle.video.name}",
                             hint="check the path on the worker")

    def _pump(self) -> None:
        while self._queue and self._free and not self._closing:
            handle = self._queue.popleft()
            slot = self._free.popleft()
            self._running[handle.job_id] = (handle, None)
            task = asyncio.get_running_loop().create_task(self._run(handle, slot))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, handle: JobHandle, slot: Slot) -> None:
        handle.timings["queued"] = round(time.monotonic() - handle._submitted, 6)
        started = time.monotonic()
        recv_conn: Connection | None = None
        try:
            handle._set_status(JobStatus.RUNNING)
            from rtc_annotator.pipelines.models import Catalog

            catalog = await asyncio.to_thread(Catalog.from_settings, self.settings)
            spec = JobSpec(
                job_id=handle.job_id, video=str(handle.video), pipelines=handle.pipelines,
                profile=handle.profile, options=handle.options, registry=self.registry.entries,
                models_dir=str(self.settings.worker.models_dir)
                if self.settings.worker.models_dir else None,
                gpu_index=slot.gpu_index, log_level=logging.getLevelName(
                    logging.getLogger().getEffectiveLevel()),
                batch_max=self.batch_max, flush_s=self.flush_s, catalog=catalog,
                cache_dir=str(self.settings.worker.cache_dir / "model-libs"),
                threads=self.settings.worker.threads_per_job,
            )
            recv_conn, send_conn = self._ctx.Pipe(duplex=False)
            proc = self._ctx.Process(target=child_main, args=(send_conn, spec),
                                     name=f"job-{handle.job_id}", daemon=True)
            try:
                proc.start()
            except Exception as exc:
                send_conn.close()
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise RtcAnnotatorError(f"cannot start the job process: {first}"[:300],
                                        code="WORKER_ERROR") from None
            send_conn.close()
            handle.pid = proc.pid
            self._running[handle.job_id] = (handle, proc)
            handle._log.info("job started", ctx={"slot": slot.index, "gpu": slot.gpu_index,
                                                "pid": proc.pid})
            outcome = await self._pump_child(handle, recv_conn)
            if not await _wait_exit(proc, 10.0):
                await self._stop_process(handle, proc)
            handle.timings["total"] = round(time.monotonic() - started, 6)
            if handle._cancel_requested:
                handle._set_status(JobStatus.CANCELLED)
            elif outcome is not None:
                pipeline, envelope, detail = outcome
                self.job_failed(handle, envelope, pipeline, detail)
            elif not handle._child_done:
                self.job_failed(handle, ErrorEnvelope(
                    code="WORKER_ERROR",
                    message=f"the job process ended unexpectedly (exit code {proc.exitcode})",
                    hint="see the worker log; the machine may be out of memory"))
            else:
                handle._set_status(JobStatus.COMPLETED)
                handle._log.info("job completed", ctx={
                    "counts": ",".join(f"{k}:{v}" for k, v in handle.counts.items()),
                    "seconds": handle.timings["total"]})
        except RtcAnnotatorError as exc:
            if handle.status not in _TERMINAL:
                self.job_failed(handle, exc.envelope())
        except Exception as exc:  # a bug in the runner itself: still one failure path
            if handle.status not in _TERMINAL:
                self.job_failed(handle, ErrorEnvelope(
                    code="WORKER_ERROR", message=f"{type(exc).__name__}: {exc}"[:300],
                    hint="see the worker log for this job id"))
            log.exception("runner error", ctx={"job": handle.job_id})
        finally:
            if recv_conn is not None:
                recv_conn.close()
            self._running.pop(handle.job_id, None)
            self._free.append(slot)
            handle._finish()
            if not self._closing:
                self._pump()

    async def _pump_child(self, handle: JobHandle, conn: Connection
                          ) -> tuple[str, ErrorEnvelope, str] | None:
        """Read the child's messages until it closes the pipe; return its failure, if any."""
        loop = asyncio.get_running_loop()
        failure: tuple[str, ErrorEnvelope, str] | None = None
        while True:
            try:
                msg = await loop.run_in_executor(self._pool, conn.recv)
            except (EOFError, OSError):
                return failure
            kind = msg[0]
            if kind == "outputs":
                _, name, items = msg
                batch = [PipelineOutput.from_dict(item) for item in items]
                handle.counts[name] = handle.counts.get(name, 0) + len(batch)
                handle._batches.put_nowait(batch)
            elif kind == "started":
                handle._log.info("pipeline started", ctx={"pipeline": msg[1]})
            elif kind == "pipeline_done":
                _, name, count, seconds, stats = msg
                handle.timings[name] = round(float(seconds), 6)
                if stats:
                    handle.stats[name] = stats
                handle._log.info("pipeline done", ctx={"pipeline": name, "count": count,
                                                      "seconds": round(float(seconds), 3)})
            elif kind == "failed":
                _, name, envelope, detail = msg
                error = ErrorEnvelope.model_validate(envelope)
                handle.failures[name] = error
                handle._log.warning("pipeline failed", ctx={
                    "pipeline": name, "code": error.code, "message": error.message})
                if failure is None:  # the job reports its first failure; others still run
                    failure = (name, error, detail)
                else:
                    handle._log.info("pipeline failure detail\n%s", detail)
            elif kind == "done":
                handle._child_done = True

    async def _stop_process(self, handle: JobHandle, proc: BaseProcess) -> None:
        """SIGTERM, then SIGKILL after the grace period; wait until the process is gone."""
        t0 = time.monotonic()
        if proc.is_alive():
            proc.terminate()
        if not await _wait_exit(proc, self.kill_grace_s):
            proc.kill()
            await _wait_exit(proc, None)
        proc.join(0)
        handle._log.info("job process stopped", ctx={
            "pid": proc.pid, "exitcode": proc.exitcode, "seconds": round(time.monotonic() - t0, 3)})


async def _wait_exit(proc: BaseProcess, limit_s: float | None) -> bool:
    """Wait (without blocking the loop) until ``proc`` has exited and been reaped.

    Polls ``is_alive()`` (a non-blocking waitpid) every 5 ms rather than watching the process
    sentinel: a cancel and the job's own end may wait on the same process at once, and two
    readers on one file descriptor replace each other, leaving one waiter to its timeout.
    """
    deadline = None if limit_s is None else time.monotonic() + limit_s
    while proc.is_alive():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.005)
    return True
