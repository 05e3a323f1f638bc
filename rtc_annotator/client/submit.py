"""Submit a video to a worker of the room and store what comes back.

:func:`submit_video` is the whole client side of one job:

1. describe the input: when the video lies on one of this machine's storage backends, the
   requirement ``required_storage`` names it, so the server prefers workers that mount it;
2. ask the signaling server for a worker (queue positions are reported through ``on_event``);
3. connect peer to peer (:class:`~rtc_annotator.transport.peer.PeerLink`, offerer);
4. submit through :class:`~rtc_annotator.transport.client_session.ClientSession`, which falls
   back from the shared path to sending the file when the worker answers
   ``BACKEND_NOT_AVAILABLE`` or ``PATH_ERROR`` (missing file);
5. write every batch through the :class:`~rtc_annotator.client.spool.Spool` (the store, or the
   on-disk spool while the database is unreachable) before acking it, record the progress in
   the local :class:`~rtc_annotator.client.jobs.JobRegistry`, and keep the ``runs`` rows:
   running on submit, then completed / failed / cancelled;
6. when the worker is lost mid-job (the link dies before ``JOB_DONE``), route again excluding
   that worker and resubmit with the same job id (same run and artifact ids, so what was stored
   already is not stored twice), at most ``[client] max_reroutes`` times.

:func:`attach_job` follows a job recorded earlier (detached, or its client was closed or
killed) on the same worker from the last stored batch; :func:`cancel_job` cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rtc_annotator import trust
from rtc_annotator.client.jobs import JobRecord, JobRegistry, JobStatus
from rtc_annotator.client.spool import Spool
from rtc_annotator.config import Settings
from rtc_annotator.errors import ErrorEnvelope, RtcAnnotatorError
from rtc_annotator.logs import get_logger
from rtc_annotator.protocol import peer as proto
from rtc_annotator.protocol.signaling import Codes, SignalingError
from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.storage import StorageResolver
from rtc_annotator.store import Store
from rtc_annotator.transport.client_session import (
    ClientSession,
    JobInterrupted,
    JobResult,
    _JobView,
    file_sha256,
)
from rtc_annotator.transport.peer import (
    CallbackSignaler,
    ConnectFailed,
    LinkClosed,
    LinkOptions,
    PeerLink,
)
from rtc_annotator.worker.envelopes import run_id_for

EventHandler = Callable[[str, dict[str, Any]], Awaitable[None] | None]
WORKER_LOST = (JobInterrupted, LinkClosed, ConnectFailed)
"""Errors that mean "this worker is gone": the job is routed again."""
STILL_RUNNING = ("JOB_MOVED", "NOT_JOB_OWNER")
"""Job answers that say the job goes on without this connection (not an end of the job)."""


@dataclass
class SubmitResult:
    """How one submitted video ended."""

    video: Path
    job_id: str
    asset_id: str
    ok: bool = False
    worker: str | None = None
    decision: str = ""
    transfer: str = ""
    sent_bytes: int = 0
    artifacts: int = 0
    """Envelopes received and made durable (store or spool), over every attempt."""
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: ErrorEnvelope | None = None
    seconds: float = 0.0
    reroutes: list[dict[str, str]] = field(default_factory=list)
    """Workers lost mid-job: ``{"worker", "reason", "to"}`` per reroute."""
    spooled: int = 0
    """Envelopes that went to the spool because the database was unreachable."""
    spool_pending: int = 0
    """Spooled files still not in the store when the call returned (``spool flush`` later)."""
    detached: bool = False
    """``detach=True``: the job was accepted (input sent) and left running on the worker."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": str(self.video),
            "job_id": self.job_id,
            "asset_id": self.asset_id,
            "ok": self.ok,
            "worker": self.worker,
            "decision": self.decision,
            "transfer": self.transfer,
            "sent_bytes": self.sent_bytes,
            "artifacts": self.artifacts,
            "pipelines": self.pipelines,
            "error": self.error.model_dump() if self.error else None,
            "seconds": round(self.seconds, 3),
            "reroutes": self.reroutes,
            "spooled": self.spooled,
            "spool_pending": self.spool_pending,
            "detached": self.detached,
        }


async def _notify(handler: EventHandler | None, kind: str, data: dict[str, Any]) -> None:
    if handler is None:
        return
    res = handler(kind, data)
    if asyncio.iscoroutine(res):
        await res


class _DetachingSession(ClientSession):
    """A session whose ``submit`` returns once the job is accepted and its input is sent."""

    async def _follow(self, view: _JobView, result: JobResult) -> JobResult:
        self._jobs.pop(view.job_id, None)
        return result


def named_models(options: dict[str, dict[str, Any]]) -> dict[str, str]:
    """pipeline -> model name, for each pipeline whose options name a ``model``."""
    return {p: str(o["model"]) for p, o in options.items()
            if isinstance(o, dict) and isinstance(o.get("model"), str)}


async def route(
    sig: SignalingClient,
    *,
    pipelines: list[str],
    required_storage: str | None = None,
    strict: bool = False,
    worker: str | None = None,
    exclude: list[str] | None = None,
    on_queue: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
    min_gpu_memory_mb: int = 0,
    models: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Ask the server for a worker (``worker``: only that one; ``exclude``: never those).

    Like :meth:`SignalingClient.route`: waits through ``queued`` updates, re-sends the same
    request id after a lost signaling connection."""
    fields: dict[str, Any] = {"pipelines": pipelines, "required_storage": required_storage,
                              "strict": strict, "worker": worker, "exclude": exclude or [],
                              "min_gpu_memory_mb": min_gpu_memory_mb}
    if models:  # only workers holding the models the job names (pipeline option "model")
        fields["models"] = models
    rid = sig.new_id("route")
    while True:
        try:
            return await sig.request("route", timeout=None, on_update=on_queue, request_id=rid,
                                     **fields)
        except SignalingError as exc:
            if exc.code != Codes.CONNECTION_LOST or not sig.reconnect:
                raise


@dataclass
class _Ctx:
    """What one job's attempts share."""

    settings: Settings
    video: Path
    spool: Spool
    registry: JobRegistry
    record: JobRecord
    result: SubmitResult
    on_event: EventHandler | None
    link_options: LinkOptions | None

    async def save(self) -> None:
        try:
            await self.registry.save(self.record)
        except OSError as exc:  # the job goes on; only reattaching would lack the record
            get_logger(__name__, job=self.record.job_id).warning(
                "cannot write the job record", ctx={"error": str(exc)})

    def sink(self, seq_base: int) -> Callable[[list[dict[str, Any]]], Awaitable[None]]:
        """Store (or spool) each batch, then record its sequence number; the session acks.

        ClientSession hands batches to the sink strictly in order from ``seq_base + 1``."""
        seq = seq_base
        record, result = self.record, self.result

        async def sink(envelopes: list[dict[str, Any]]) -> None:
            nonlocal seq
            before = self.spool.spooled_envelopes
            await self.spool.ingest(envelopes, job_id=record.job_id, seq=seq + 1)
            seq += 1
            result.spooled += self.spool.spooled_envelopes - before
            result.artifacts += len(envelopes)
            record.last_acked_seq = seq
            record.artifacts += len(envelopes)
            await self.save()
            await _notify(self.on_event, "artifacts", {"count": len(envelopes), "seq": seq})

        return sink

    async def connect(self, sig: SignalingClient, routed: dict[str, Any]) -> PeerLink:
        session_id = str(routed["session_id"])
        base = self.link_options or LinkOptions(ice=self.settings.ice)
        # the room we asked for (the server's welcome only when the config names none)
        room = self.settings.signaling.room or sig.welcome.get("room")
        trust_opts: dict[str, Any] = {"session_id": session_id,
                                      "trust": trust.policy(self.settings, room)}
        if self.settings.trust.client_key:
            trust_opts["identity"] = await asyncio.to_thread(trust.load_identity, self.settings)
        options = LinkOptions(
            **{**base.__dict__, "extra_ice_servers": list(routed.get("ice_servers") or []),
               **trust_opts}
        )
        signaler = CallbackSignaler.for_session(sig, session_id)
        return await PeerLink.connect(
            signaler, offer=True, role="client", name="client", options=options
        )

    def session(self, link: PeerLink, sink: Any, transfer: str, detach: bool) -> ClientSession:
        on_event = self.on_event

        async def on_progress(msg: proto.Progress) -> None:
            await _notify(
                on_event, "progress",
                {"stage": msg.stage, "fraction": msg.fraction, "bytes": msg.bytes},
            )

        def on_transfer(done: int, total: int) -> None:
            if on_event is not None:
                res = on_event("upload", {"done": done, "total": total})
                if asyncio.iscoroutine(res):
                    asyncio.ensure_future(res)

        cls = _DetachingSession if detach else ClientSession
        return cls(
            link,
            sink,
            storage=self.settings.storage_config() if transfer != "rtc" else None,
            on_progress=on_progress,
            transfer_progress=on_transfer,
        )

    def take(self, job: JobResult) -> None:
        """Copy what a finished session reported into the result and the record."""
        r = self.result
        r.ok = job.ok
        r.transfer = job.transfer or r.transfer
        r.sent_bytes += job.sent_bytes
        r.error = job.error
        r.pipelines = {
            k: {"artifacts": v.artifacts, "seconds": v.seconds,
                **({"gate": v.gate.model_dump()} if v.gate is not None else {})}
            for k, v in job.pipelines.items()
        }
        self.record.transfer = r.transfer


async def submit_video(
    settings: Settings,
    video: Path,
    *,
    store: Store,
    pipelines: list[str],
    profile: str = "balanced",
    options: dict[str, dict[str, Any]] | None = None,
    transfer: Literal["auto", "shared", "rtc"] = "auto",
    storage_backend: str | None = None,
    strict_storage: bool = False,
    signaling: SignalingClient | None = None,
    link_options: LinkOptions | None = None,
    job_id: str | None = None,
    on_event: EventHandler | None = None,
    spool: Spool | None = None,
    jobs: JobRegistry | None = None,
    detach: bool = False,
    max_reroutes: int | None = None,
    spool_wait_s: float | None = None,
    worker: str | None = None,
    min_gpu_memory_mb: int = 0,
) -> SubmitResult:
    """Run one video through a worker of the room; never raises for a job-level failure.

    ``spool``: shared spool (default: one on ``[client] spool_dir`` for this call, flushed for
    up to ``spool_wait_s`` at the end). ``jobs``: job registry (default
    ``settings.client.jobs_path()``).
    ``detach``: return once the job is accepted and its input sent (``result.detached``); the
    worker keeps the batches until ``attach_job``. Events through ``on_event``: hashing,
    routing, queued, routed, connected, upload, progress, artifacts, spooled, flushed,
    rerouted, detached. ``worker``: route only to that worker (it queues the job when its
    slots are full); ``min_gpu_memory_mb``: only workers whose largest GPU has that much.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    video = Path(await asyncio.to_thread(os.path.abspath, video))
    job_id = job_id or uuid.uuid4().hex[:16]
    log = get_logger(__name__, job=job_id)
    if not await asyncio.to_thread(video.is_file):
        raise RtcAnnotatorError(
            f"video not found: {video}", code="VIDEO_ERROR", hint="check the path"
        )
    await _notify(on_event, "hashing", {"video": str(video)})
    asset_id = await file_sha256(video)
    size = (await asyncio.to_thread(video.stat)).st_size
    result = SubmitResult(video=video, job_id=job_id, asset_id=asset_id)
    opts = {p: dict((options or {}).get(p, {})) for p in pipelines}
    reroutes_left = settings.client.max_reroutes if max_reroutes is None else max_reroutes

    resolver = StorageResolver(settings.storage_config())
    required: str | None = None
    if transfer != "rtc":
        if storage_backend is not None:
            required = resolver.to_relative(video, storage_backend)[0]
        else:
            loc = resolver.locate(video)
            required = loc.storage_backend if loc else None
        if transfer == "shared" and required is None:
            raise RtcAnnotatorError(
                f"{video} is not on any configured storage backend",
                code="NOT_UNDER_BACKEND",
                hint="use --transfer auto or rtc, or add a [storage.<name>] section",
            )

    own_spool = spool is None
    spool_ = spool or Spool(store, settings.client.spool_dir, on_event=on_event)
    registry = jobs or JobRegistry(settings.client.jobs_path())
    record = JobRecord(job_id=job_id, video=str(video), asset_id=asset_id, pipelines=pipelines,
                       options=opts, profile=profile)
    ctx = _Ctx(settings, video, spool_, registry, record, result, on_event, link_options)
    await ctx.save()
    own_signaling = signaling is None
    sig = signaling or SignalingClient.from_settings(settings.signaling)
    runs_started = False
    excluded: list[str] = []
    try:
        if own_signaling:
            await sig.connect()
        await spool_.upsert_asset(asset_id, video.name, size)

        async def on_queue(frame: dict[str, Any]) -> None:
            await _notify(on_event, "queued", {"position": frame.get("position")})

        while True:
            await _notify(on_event, "routing", {"required_storage": required})
            routed = await route(sig, pipelines=pipelines, required_storage=required,
                                 strict=strict_storage, exclude=excluded, on_queue=on_queue,
                                 worker=worker, min_gpu_memory_mb=min_gpu_memory_mb,
                                 models=named_models(opts))
            session_id = str(routed["session_id"])
            result.worker = str(routed.get("worker"))
            decision = routed.get("decision") or {}
            result.decision = str(decision.get("reason", "")) if isinstance(decision, dict) else ""
            log.info("routed", ctx={"worker": result.worker, "decision": result.decision})
            await _notify(on_event, "routed",
                          {"worker": result.worker, "decision": result.decision})
            record.worker = result.worker
            record.set_status(JobStatus.RUNNING)
            await ctx.save()
            for name in pipelines:
                await spool_.start_run(run_id_for(job_id, name), asset_id, name, profile,
                                       result.worker or "")
            runs_started = True
            link: PeerLink | None = None
            session: ClientSession | None = None
            try:
                link = await ctx.connect(sig, routed)
                await _notify(on_event, "connected", {"worker": result.worker})
                record.last_acked_seq = 0  # a (re)submitted job numbers its batches from 1
                session = ctx.session(link, ctx.sink(0), transfer, detach)
                job = await session.submit(
                    video, pipelines=opts, model_profile=profile, job_id=job_id,
                    transfer=transfer,
                )
                if job.error is not None and job.error.code == "WORKER_SHUTDOWN":
                    # the worker was stopped (scancel, pre-emption, requeue) and gave it back
                    raise JobInterrupted(f"worker {result.worker} shut down before job "
                                         f"{job_id} finished")
            except WORKER_LOST as exc:
                if reroutes_left <= 0:
                    raise
                reroutes_left -= 1
                lost = result.worker or "?"
                excluded.append(lost)
                record.reroutes.append(lost)
                result.reroutes.append({"worker": lost, "reason": f"{exc.code}: {exc.message}"})
                log.warning("worker lost mid-job, routing again",
                            ctx={"worker": lost, "code": exc.code, "left": reroutes_left})
                await _notify(on_event, "rerouted", {"worker": lost, "reason": exc.message})
                continue
            finally:
                if session is not None:
                    await session.close()
                if link is not None:
                    await link.close("job over" if not detach else "detached")
                with contextlib.suppress(Exception):
                    await sig.end_session(session_id, "client done")
            break
        if result.reroutes:
            result.reroutes[-1]["to"] = result.worker or ""
        ctx.take(job)
        if detach and job.error is None:
            result.detached = True
            record.set_status(JobStatus.DETACHED)
            await ctx.save()
            log.info("job detached", ctx={"worker": result.worker, "transfer": job.transfer})
            await _notify(on_event, "detached", {"worker": result.worker})
        elif job.error is not None and job.error.code in STILL_RUNNING:
            # another connection of ours follows the job now (or the worker says it is not
            # ours): its runs and its record are not ours to end
            log.info("job left to its other follower", ctx={"code": job.error.code})
        else:
            log.info("job ended", ctx={"ok": job.ok, "transfer": job.transfer,
                                       "sent_bytes": result.sent_bytes,
                                       "artifacts": result.artifacts, "worker": result.worker,
                                       "reroutes": len(result.reroutes)})
            await _finish_runs(spool_, job_id, pipelines, result)
            await _end_record(ctx)
    except RtcAnnotatorError as exc:
        result.error = exc.envelope()
        log.warning("job failed", ctx={"code": exc.code, "error": exc.message})
        if runs_started:
            with contextlib.suppress(Exception):
                await _finish_runs(spool_, job_id, pipelines, result)
        with contextlib.suppress(Exception):
            await _end_record(ctx)
    except asyncio.CancelledError:
        record.set_status(JobStatus.INTERRUPTED)
        with contextlib.suppress(BaseException):
            await ctx.save()
        raise
    finally:
        if own_signaling:
            await sig.close()
        try:
            await _settle_spool(spool_, result, settings, spool_wait_s, own_spool)
        finally:
            result.seconds = loop.time() - started
    return result


async def _settle_spool(spool: Spool, result: SubmitResult, settings: Settings,
                        wait_s: float | None, own: bool) -> None:
    """Flush what this job spooled (bounded wait); report what is left."""
    if spool.spooled_files:
        wait = settings.client.spool_wait_s if wait_s is None else wait_s
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            wait = 0.0  # interrupted: one pass, the rest waits for `spool flush`
        status = await spool.flush(wait_s=wait)
        result.spool_pending = status.files
        if status.files:
            get_logger(__name__, job=result.job_id).warning(
                "spooled batches not yet in the store",
                ctx={"files": status.files, "dir": str(spool.directory)})
    if own:
        await spool.close()


async def _end_record(ctx: _Ctx) -> None:
    r = ctx.result
    if r.ok:
        ctx.record.set_status(JobStatus.DONE)
    elif r.error is not None and r.error.code == "CANCELLED":
        ctx.record.set_status(JobStatus.CANCELLED, f"{r.error.code}: {r.error.message}")
    else:
        err = r.error
        ctx.record.set_status(JobStatus.FAILED,
                              f"{err.code}: {err.message}" if err else "unknown error")
    await ctx.save()


async def _finish_runs(
    spool: Spool, job_id: str, pipelines: list[str], result: SubmitResult
) -> None:
    for name in pipelines:
        run_id = run_id_for(job_id, name)
        if result.ok:
            await spool.finish_run(run_id, "completed")
        elif result.error is not None and result.error.code == "CANCELLED":
            await spool.finish_run(run_id, "cancelled", result.error.message)
        else:
            err = result.error
            await spool.finish_run(
                run_id, "failed", f"{err.code}: {err.message}" if err else "unknown error"
            )


async def attach_job(
    settings: Settings,
    job_id: str,
    *,
    store: Store,
    jobs: JobRegistry | None = None,
    signaling: SignalingClient | None = None,
    link_options: LinkOptions | None = None,
    on_event: EventHandler | None = None,
    spool: Spool | None = None,
    cancel: bool = False,
    resubmit: bool = True,
    spool_wait_s: float | None = None,
) -> SubmitResult:
    """Follow a recorded job on its worker from the last stored batch (``cancel``: cancel it).

    The route names the recorded worker (it need not have a free slot). When that worker is no
    longer online and ``resubmit`` is set (and not cancelling), the job is submitted again with
    the same id to another worker, which yields the same artifact ids. Never raises for a
    job-level failure; :class:`~rtc_annotator.client.jobs.UnknownJob` when nothing is recorded.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    registry = jobs or JobRegistry(settings.client.jobs_path())
    record = await registry.get(job_id)
    log = get_logger(__name__, job=job_id)
    video = Path(record.video)
    result = SubmitResult(video=video, job_id=job_id, asset_id=record.asset_id,
                          worker=record.worker, transfer=record.transfer)
    if record.worker is None:
        raise RtcAnnotatorError(f"job {job_id} was never routed to a worker",
                                code="JOB_NOT_ROUTED", hint="submit the video again")
    own_spool = spool is None
    spool_ = spool or Spool(store, settings.client.spool_dir, on_event=on_event)
    ctx = _Ctx(settings, video, spool_, registry, record, result, on_event, link_options)
    own_signaling = signaling is None
    sig = signaling or SignalingClient.from_settings(settings.signaling)
    session_id: str | None = None
    link: PeerLink | None = None
    session: ClientSession | None = None
    try:
        if own_signaling:
            await sig.connect()
        await _notify(on_event, "routing", {"worker": record.worker})
        try:
            routed = await route(sig, pipelines=[], worker=record.worker)
        except SignalingError as exc:
            if exc.code != Codes.NO_MATCHING_WORKER or cancel or not resubmit:
                raise
            has_video = await asyncio.to_thread(video.is_file)
            if not has_video:
                raise RtcAnnotatorError(
                    f"worker {record.worker} is gone and {video} is missing",
                    code="JOB_LOST", hint="the job cannot be resumed; submit the video again",
                ) from None
            log.warning("recorded worker is gone, submitting the job again",
                        ctx={"worker": record.worker})
            await _notify(on_event, "rerouted", {"worker": record.worker,
                                                 "reason": exc.message})
            if own_signaling:
                await sig.close()
                own_signaling = False
            if own_spool:
                await spool_.close()
                own_spool = False
            again = await submit_video(
                settings, video, store=store, pipelines=record.pipelines,
                profile=record.profile, options=record.options, link_options=link_options,
                job_id=job_id, on_event=on_event, spool=spool, jobs=registry,
                signaling=signaling, spool_wait_s=spool_wait_s)
            again.reroutes.insert(0, {"worker": record.worker, "reason": exc.message,
                                      "to": again.worker or ""})
            return again
        session_id = str(routed["session_id"])
        link = await ctx.connect(sig, routed)
        await _notify(on_event, "connected", {"worker": record.worker})
        session = ctx.session(link, ctx.sink(record.last_acked_seq), "rtc", False)
        input_path = video if await asyncio.to_thread(video.is_file) else None
        attaching = asyncio.create_task(session.attach(
            job_id, last_acked_seq=record.last_acked_seq, input_path=input_path))
        if cancel:
            await asyncio.sleep(0)  # the ATTACH goes out first (sends are synchronous)
            await session.cancel(job_id)
            log.info("cancel sent", ctx={"worker": record.worker})
        job = await attaching
        ctx.take(job)
        result.transfer = record.transfer
        log.info("attached job ended", ctx={"ok": job.ok, "artifacts": result.artifacts})
        if job.error is not None and job.error.code in STILL_RUNNING:
            log.info("job left to its other follower", ctx={"code": job.error.code})
        else:
            if job.error is None or job.error.code not in ("UNKNOWN_JOB", "INPUT_NEEDED"):
                await _finish_runs(spool_, job_id, record.pipelines, result)
            await _end_record(ctx)
    except RtcAnnotatorError as exc:
        result.error = exc.envelope()
        log.warning("attach failed", ctx={"code": exc.code, "error": exc.message})
        if isinstance(exc, WORKER_LOST):
            record.set_status(JobStatus.INTERRUPTED)
            with contextlib.suppress(Exception):
                await ctx.save()
    except asyncio.CancelledError:
        record.set_status(JobStatus.INTERRUPTED)
        with contextlib.suppress(BaseException):
            await ctx.save()
        raise
    finally:
        if session is not None:
            await session.close()
        if link is not None:
            await link.close("attach over")
        if session_id is not None:
            with contextlib.suppress(Exception):
                await sig.end_session(session_id, "client done")
        if own_signaling:
            await sig.close()
        try:
            await _settle_spool(spool_, result, settings, spool_wait_s, own_spool)
        finally:
            result.seconds = loop.time() - started
    return result


async def cancel_job(settings: Settings, job_id: str, *, store: Store,
                     **kw: Any) -> SubmitResult:
    """Attach to a recorded job and cancel it; what it produced so far is stored."""
    return await attach_job(settings, job_id, store=store, cancel=True, **kw)
