"""The networked worker: signaling registration + peer links + the local job runner.

``rtc-annotator worker --config worker.toml`` runs one :class:`WorkerAgent`:

1. connect out to the signaling server with the worker token and register the capabilities
   (:func:`~rtc_annotator.worker.capabilities.worker_capabilities`); the signaling client
   re-registers after every reconnect;
2. for each ``session_started`` the server sends, answer the client's WebRTC offer
   (:class:`~rtc_annotator.transport.peer.PeerLink`) and serve it with the
   :class:`~rtc_annotator.transport.worker_session.JobServer`;
3. run each job through the :class:`~rtc_annotator.worker.runner.JobRunner` (a child process per
   job) and turn its outputs into envelopes with :class:`EnvelopeBuilder`;
4. on SIGTERM/SIGINT: leave the signaling server (no new sessions), give running jobs
   ``[worker] shutdown_grace_s`` to finish, cancel the rest (their clients get ``JOB_FAILED``
   with code ``WORKER_SHUTDOWN``), and return so the process exits 0. The outbox stays on disk;
5. with ``[worker] idle_exit_s`` set, stop the same way after that long with no session and no
   job (workers started on demand by ``rtc-annotator pool`` give their node back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

from rtc_annotator.errors import ErrorEnvelope, RtcAnnotatorError
from rtc_annotator.logs import get_logger
from rtc_annotator.protocol import peer as proto
from rtc_annotator.protocol.signaling import Codes
from rtc_annotator.signaling_client import FATAL_CODES, SignalingClient, SignalingError
from rtc_annotator.transport.filetransfer import FileCache
from rtc_annotator.transport.outbox import Outbox
from rtc_annotator.transport.peer import CallbackSignaler, LinkOptions, PeerLink
from rtc_annotator.transport.worker_session import Emit, JobServer, ProgressCb
from rtc_annotator.trust import load_identity
from rtc_annotator.worker.capabilities import worker_capabilities
from rtc_annotator.worker.envelopes import EnvelopeBuilder, sha256_file
from rtc_annotator.worker.runner import JobRunner, JobStatus

_log = get_logger(__name__)


class WorkerShutdown(RtcAnnotatorError):
    """The worker is shutting down (SIGTERM, pre-emption) and gave the job back."""

    code = "WORKER_SHUTDOWN"
    default_hint = "submit the job again: another worker will take it"


class WorkerAgent:
    """One worker process's network side."""

    def __init__(
        self,
        settings: Any,
        *,
        signaling: SignalingClient | None = None,
        link_options: LinkOptions | None = None,
        runner: JobRunner | None = None,
    ) -> None:
        self.settings = settings
        self.name: str = settings.worker.name
        self.capabilities = worker_capabilities(settings)
        self.runner = runner or JobRunner(settings)
        self.signaling = signaling or SignalingClient.from_settings(
            settings.signaling, name=self.name
        )
        self.link_options = link_options or LinkOptions(ice=settings.ice)
        cache_dir = Path(settings.worker.cache_dir)
        self.server = JobServer(
            storage=settings.storage_config(),
            executor=self.execute,
            cache=FileCache(cache_dir / "files", max_bytes=settings.worker.max_upload_bytes,
                            cap_bytes=settings.worker.cache_max_bytes),
            outbox=Outbox(cache_dir / "outbox"),
            job_slots=len(self.runner.slots),
            max_open_transfers=settings.worker.max_open_transfers,
            max_queued_jobs=settings.worker.max_queued_jobs_per_client,
        )
        self.identity = load_identity(settings)  # created on first start (mode 0600)
        _log.info("worker key", ctx={"key": self.identity.public_key,
                                     "vouched": self.identity.vouch is not None})
        self._links: set[PeerLink] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = 0
        self._sessions_open = 0
        self._last_active = 0.0  # loop time of the last session or job end (idle-exit clock)
        self.idle_exited = False
        self._stopping = asyncio.Event()
        self._fatal: SignalingError | None = None  # why signaling stopped for good, if it did
        self.ready = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, install_signal_handlers: bool = False) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT when handlers are installed)."""
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        await self.signaling.connect()
        reply = await self.signaling.register_worker(self.capabilities)
        _log.info(
            "worker registered",
            ctx={
                "name": self.name,
                "room": reply.get("room"),
                "backends": ",".join(b["name"] for b in self.capabilities["storage_backends"])
                or "-",
                "pipelines": ",".join(self.capabilities["pipelines"]) or "-",
                "slots": self.capabilities["job_slots"],
            },
        )
        for name, reason in self.capabilities.get("unavailable", {}).items():
            _log.info("pipeline unavailable", ctx={"pipeline": name, "reason": reason})
        self.ready.set()
        self._last_active = loop.time()
        events = asyncio.create_task(self._events())
        expiry = asyncio.create_task(self._expire_outbox())
        idle_s = float(getattr(self.settings.worker, "idle_exit_s", 0.0) or 0.0)
        idle = asyncio.create_task(self._idle_exit(idle_s)) if idle_s > 0 else None
        try:
            await self._stopping.wait()
        finally:
            for task in (events, expiry, idle):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self._shutdown()
        if self._fatal is not None:
            raise self._fatal

    def stop(self) -> None:
        if not self._stopping.is_set():
            _log.info(
                "stopping: no new jobs", ctx={"grace_s": self.settings.worker.shutdown_grace_s}
            )
            self._stopping.set()

    def _busy(self) -> bool:
        return self._sessions_open > 0 or self._running > 0 or any(
            j.task is not None and not j.task.done() for j in self.server.jobs.values())

    async def _idle_exit(self, idle_s: float) -> None:
        """Stop after ``idle_s`` seconds with no session and no job (``[worker] idle_exit_s``)."""
        loop = asyncio.get_running_loop()
        while True:
            if self._busy():
                self._last_active = loop.time()
                await asyncio.sleep(min(1.0, idle_s))
                continue
            idle = loop.time() - self._last_active
            if idle >= idle_s:
                _log.info("idle, exiting", ctx={"name": self.name, "idle_s": round(idle, 1),
                                                "idle_exit_s": idle_s})
                self.idle_exited = True
                self.stop()
                return
            await asyncio.sleep(min(1.0, idle_s - idle))

    async def _shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.signaling.close()
        running = [j for j in self.server.jobs.values() if j.task is not None and not j.task.done()]
        if running:
            _log.info("waiting for running jobs", ctx={"jobs": len(running)})
            tasks = [j.task for j in running if j.task is not None]
            _done, pending = await asyncio.wait(
                tasks, timeout=self.settings.worker.shutdown_grace_s
            )
            for task in pending:
                task.cancel(
                    ErrorEnvelope(  # type: ignore[arg-type]
                        code=WorkerShutdown.code,
                        message="the worker shut down before the job finished",
                        hint=WorkerShutdown.default_hint,
                    )
                )
            if pending:
                await asyncio.wait(pending, timeout=10)
        # Give connected clients a moment to ack the last batches; the outbox keeps the rest.
        await asyncio.sleep(0.2)
        for link in list(self._links):
            await link.close("worker shutting down")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.runner.close(grace_s=2.0)
        _log.info("worker stopped", ctx={"name": self.name})

    async def _expire_outbox(self) -> None:
        """At start and then every hour (or a quarter of the expiry, if shorter)."""
        max_age_s = self.settings.worker.outbox_expire_days * 86400
        while True:
            try:
                expired = await self.server.expire_outbox(max_age_s)
            except OSError as exc:
                _log.warning("outbox expiry failed", ctx={"error": str(exc)})
            else:
                if expired:
                    _log.info("outbox entries expired", ctx={"jobs": len(expired)})
            await asyncio.sleep(min(3600.0, max_age_s / 4))

    # ------------------------------------------------------------------ sessions

    async def _events(self) -> None:
        async for event in self.signaling.events():
            if event.get("type") == "session_started":
                task = asyncio.create_task(self._session(event))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif event.get("type") == "error" and event.get("code") in FATAL_CODES:
                self._fatal = SignalingError.from_frame(event)
        # the stream ends only when the signaling client stopped for good (a revoked token,
        # the name taken by another token during an outage, REPLACED): a worker nobody can
        # reach must not sit idle, so it stops and run() raises the reason
        if not self._stopping.is_set():
            reason = self._fatal or SignalingError(
                "the signaling client stopped", code=Codes.CONNECTION_LOST,
                hint="see the log above for why; restart the worker")
            self._fatal = reason
            _log.error("signaling stopped for good, stopping the worker",
                       ctx={"code": reason.code, "error": reason.message})
            self.stop()

    async def _session(self, event: dict[str, Any]) -> None:
        session_id = str(event["session_id"])
        log = get_logger(__name__, session=session_id, peer=event.get("client"))
        signaler = CallbackSignaler.for_session(self.signaling, session_id)
        options = LinkOptions(
            **{
                **self.link_options.__dict__,
                "extra_ice_servers": list(event.get("ice_servers") or []),
                "session_id": session_id,
                "identity": self.identity,
            }
        )
        link: PeerLink | None = None
        self._sessions_open += 1
        try:
            link = await PeerLink.connect(
                signaler, offer=False, role="worker", name=self.name, options=options
            )
            # jobs belong to the client's token (the server signed it), else its identity
            token_id = event.get("client_token")
            link.peer_identity = (f"token:{token_id}" if token_id
                                  else str(event.get("client") or "") or None)
            self._links.add(link)
            log.info("client connected", ctx={"client_key": link.peer_key or "-"})
            await self.server.serve(link)
        except RtcAnnotatorError as exc:
            log.warning("session failed", ctx={"code": exc.code, "error": exc.message})
        finally:
            self._sessions_open -= 1
            self._last_active = asyncio.get_running_loop().time()
            if link is not None:
                self._links.discard(link)
                await link.close("session over")
            with contextlib.suppress(Exception):
                await self.signaling.end_session(session_id, "worker done")
            log.info("session closed")

    # ------------------------------------------------------------------ jobs

    async def _set_load(self, delta: int) -> None:
        """Count the job and tell the server in the background: a signaling outage must never
        hold up a job (the signaling client re-sends the load when it re-registers)."""
        self._running += delta

        async def report(load: int) -> None:
            with contextlib.suppress(Exception):
                await self.signaling.update_load(load)

        task = asyncio.create_task(report(self._running))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def execute(
        self, job: proto.JobRequest, input_path: Path, emit: Emit, progress: ProgressCb
    ) -> dict[str, Any]:
        """Executor for the JobServer: run the pipelines in a child process, stream envelopes."""
        log = get_logger(__name__, job=job.job_id)
        inp = job.input
        if isinstance(inp, proto.RtcInput):
            asset_id = inp.sha256
        else:
            await progress("hashing", 0.0)
            asset_id = await asyncio.to_thread(sha256_file, input_path)
        duration_ms = await asyncio.to_thread(_duration_ms, input_path)
        pipelines = list(job.pipelines)
        builder = EnvelopeBuilder(asset_id, job.job_id, pipelines, job.model_profile, job.pipelines)
        await self._set_load(+1)
        handle = await self.runner.submit(
            job.job_id, input_path, pipelines, job.model_profile, dict(job.pipelines)
        )
        try:
            total = 0
            async for batch in handle.outputs():
                envelopes = builder.build(batch)
                total += len(envelopes)
                for chunk in _by_size([e.model_dump(mode="json") for e in envelopes]):
                    await emit(chunk)
                last = batch[-1]
                fraction = min(1.0, last.span_end_ms / duration_ms) if duration_ms else 0.0
                await progress(builder.pipeline_of(last.artifact_type), fraction)
            result = await handle.wait()
        except asyncio.CancelledError:
            await handle.cancel()
            raise
        finally:
            await self._set_load(-1)
        if result.status is not JobStatus.COMPLETED:
            error = result.error or ErrorEnvelope(
                code="CANCELLED", message="job cancelled on the worker"
            )
            if (not self._stopping.is_set() and error.code == "WORKER_ERROR"
                    and "ended unexpectedly" in error.message):
                # SLURM and Kubernetes signal every process of the job at once: a job process
                # killed together with the worker is a shutdown, not a failure of the job
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)
            if self._stopping.is_set() and error.code != WorkerShutdown.code:
                error = ErrorEnvelope(code=WorkerShutdown.code,
                                      message="the worker shut down before the job finished",
                                      hint=WorkerShutdown.default_hint)
            log.warning("job failed", ctx={"code": error.code, "pipeline": result.pipeline})
            raise RtcAnnotatorError(error.message, hint=error.hint, code=error.code)
        log.info("job completed", ctx={"artifacts": total})
        return {
            "pipelines": {
                name: {
                    "artifacts": result.counts.get(name, 0),
                    "seconds": round(float(result.timings.get(name, 0.0)), 3),
                    **({"gate": result.stats[name]["gate"]}
                       if "gate" in result.stats.get(name, {}) else {}),
                }
                for name in pipelines
            }
        }


MAX_BATCH_BYTES = 128 * 1024
"""Keep each ARTIFACT_BATCH well under aiortc's 256 KiB limit for one data-channel message."""


def _by_size(envelopes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split envelopes into batches of at most ``MAX_BATCH_BYTES`` (JSON size as estimate)."""
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for env in envelopes:
        n = len(json.dumps(env, separators=(",", ":"), default=str))
        if current and size + n > MAX_BATCH_BYTES:
            batches.append(current)
            current, size = [], 0
        current.append(env)
        size += n
    if current:
        batches.append(current)
    return batches


def _duration_ms(path: Path) -> int:
    """Container duration for progress fractions (0 when unknown). Blocking."""
    import av

    try:
        with av.open(str(path)) as container:
            return int(container.duration * 1000 / av.time_base) if container.duration else 0
    except (OSError, ValueError, av.error.FFmpegError):  # type: ignore[attr-defined]
        return 0
