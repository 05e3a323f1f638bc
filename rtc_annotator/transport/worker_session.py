"""Worker side of the job exchange over one or more :class:`PeerLink` s.

:class:`JobServer` keeps jobs independent of links: a client that drops and reconnects (same or
new link) ``ATTACH``es to its job and gets every unacked batch replayed from the :class:`Outbox`.

Shared inputs are resolved only through the worker's :class:`StorageConfig`; an unknown backend
answers ``BACKEND_NOT_AVAILABLE``, a missing file, an escape from the base path, or a size or
fingerprint mismatch answers ``PATH_ERROR`` with a ``reason``. Other inputs arrive over the bulk
channel into the :class:`FileCache`.

The executor runs the pipelines::

    async def execute(job: JobRequest, input_path: Path,
                      emit: Callable[[list[dict]], Awaitable[None]],
                      progress: Callable[..., Awaitable[None]]) -> dict

``emit`` stores a batch in the outbox, then sends it; ``progress(stage, fraction, bytes=None,
rate=None)`` sends a PROGRESS. It returns per-pipeline stats ``{name: {"artifacts": n,
"seconds": s}}`` (optionally wrapped as ``{"pipelines": {...}}``). Every way a job ends goes
through :meth:`JobServer._finish`.

Jobs belong to the client that submitted them: its proven key (``key:...``, when the client proves
one) or else the identity the signaling server paired this link with (``link.peer_identity``,
set by the worker agent from ``session_started``). ``ATTACH``, ``CANCEL`` and ``ARTIFACT_ACK``
from anyone else get ``JOB_REJECTED`` with code ``NOT_JOB_OWNER``; a ``CANCEL`` of an unknown job
gets ``UNKNOWN_JOB``, of an ended one ``JOB_ENDED``. When the owner attaches on a second link, the
first link gets ``JOB_MOVED``. Limits: ``max_open_transfers`` per link (``TRANSFER_STATUS`` with
``TOO_MANY_TRANSFERS``) and ``max_queued_jobs`` unfinished jobs per owner (``TOO_MANY_JOBS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rtc_annotator.errors import ErrorEnvelope, PathRejected, RtcAnnotatorError, UnknownBackend
from rtc_annotator.logs import get_logger
from rtc_annotator.protocol import peer as proto
from rtc_annotator.protocol.peer import JobMachine, JobState
from rtc_annotator.storage import StorageConfig
from rtc_annotator.transport.filetransfer import FileCache, FileReceiver
from rtc_annotator.transport.outbox import Outbox, OutboxEntry
from rtc_annotator.transport.peer import LinkClosed, PeerLink

Emit = Callable[[list[dict[str, Any]]], Awaitable[None]]
ProgressCb = Callable[..., Awaitable[None]]
Executor = Callable[[proto.JobRequest, Path, Emit, ProgressCb], Awaitable[dict[str, Any]]]

_log = get_logger(__name__)


@dataclass
class WorkerJob:
    request: proto.JobRequest
    machine: JobMachine
    transfer: Literal["shared", "rtc", "cached"]
    input_path: Path | None = None
    link: PeerLink | None = None
    task: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    final: proto.JobDone | proto.JobFailed | None = None
    pinned: str | None = None
    """sha256 of the cached input this job keeps from eviction, until it ends."""
    owner: str | None = None
    """Client identity that submitted the job (see :func:`owner_of`)."""

    @property
    def job_id(self) -> str:
        return self.request.job_id


def owner_of(link: PeerLink) -> str | None:
    """Who a link speaks for: the key it proved, else the identity the server paired it with."""
    if link.peer_key is not None:
        return f"key:{link.peer_key}"
    return link.peer_identity


def _not_owner(job_id: str) -> proto.JobRejected:
    return proto.JobRejected(job_id=job_id, error=ErrorEnvelope(
        code="NOT_JOB_OWNER", message=f"job {job_id} was submitted by another client",
        hint="only the client identity that submitted a job may attach to, ack or cancel it"))


class JobServer:
    """Accepts jobs from client links, runs them through the executor, streams results."""

    def __init__(self, *, storage: StorageConfig, executor: Executor, cache: FileCache,
                 outbox: Outbox, job_slots: int = 1, max_open_transfers: int = 4,
                 max_queued_jobs: int = 32) -> None:
        self.storage = storage
        self.executor = executor
        self.cache = cache
        self.outbox = outbox
        self.job_slots = job_slots
        self.max_open_transfers = max_open_transfers
        self.max_queued_jobs = max_queued_jobs
        self.jobs: dict[str, WorkerJob] = {}
        self._slots = asyncio.Semaphore(job_slots)

    # ------------------------------------------------------------------ serving a link

    async def serve(self, link: PeerLink) -> None:
        """Handle one link's messages until it closes. Jobs outlive the link."""
        receivers: dict[int, FileReceiver] = {}

        def on_bulk(frame: bytes) -> None:
            try:
                transfer_no, offset, payload, ok = proto.unpack_chunk(frame)
            except RtcAnnotatorError:
                return
            receiver = receivers.get(transfer_no)
            if receiver is not None:
                receiver.on_chunk(offset, payload, ok)

        link.set_bulk_handler(on_bulk)
        try:
            while True:
                try:
                    msg = await link.recv()
                except LinkClosed:
                    return
                try:
                    await self._dispatch(link, msg, receivers)
                except LinkClosed:
                    return
                except RtcAnnotatorError as exc:
                    _log.warning("message refused", ctx={"type": msg.type, "code": exc.code})
                    with contextlib.suppress(LinkClosed):
                        await link.send(proto.Error(error=exc.envelope()))
                except OSError as exc:  # the outbox or cache disk; the link goes on
                    _log.error("message failed on disk", ctx={"type": msg.type,
                                                              "error": str(exc)})
                    with contextlib.suppress(LinkClosed):
                        await link.send(proto.Error(error=ErrorEnvelope(
                            code="WORKER_DISK_ERROR", message=f"the worker could not handle "
                            f"{msg.type} ({type(exc).__name__})", hint="see the worker log")))
        finally:
            link.set_bulk_handler(None)
            for receiver in receivers.values():
                await receiver.abort()
            for job in self.jobs.values():
                if job.link is link:
                    job.link = None

    async def _dispatch(self, link: PeerLink, msg: proto.PeerMessage,
                        receivers: dict[int, FileReceiver]) -> None:
        if isinstance(msg, proto.JobRequest):
            await self._on_request(link, msg)
        elif isinstance(msg, proto.TransferOffer):
            old = receivers.pop(msg.transfer_no, None)
            if old is not None:
                await old.abort()
            for no in [no for no, r in receivers.items() if r.done.is_set()]:
                del receivers[no]
            if len(receivers) >= self.max_open_transfers:
                _log.warning("transfer offer refused: too many open",
                             ctx={"job": msg.job_id, "open": len(receivers), "link": link.id})
                await link.send(proto.TransferStatus(
                    transfer_no=msg.transfer_no, sha256=msg.sha256, have_bytes=0,
                    error=ErrorEnvelope(
                        code="TOO_MANY_TRANSFERS",
                        message=f"this link already has {len(receivers)} open transfers "
                                f"(limit {self.max_open_transfers})",
                        hint="send files one after another, or raise [worker] "
                             "max_open_transfers on the worker")))
                return
            receiver = FileReceiver(self.cache, link, msg,
                                    progress=self._transfer_progress(msg.job_id, link))
            receivers[msg.transfer_no] = receiver
            asyncio.create_task(self._receive(receiver))
        elif isinstance(msg, proto.TransferDone):
            current = receivers.get(msg.transfer_no)
            if current is not None:
                await current.finish(msg)
        elif isinstance(msg, proto.ArtifactAck):
            if await self._owned(link, msg.job_id):
                await self._on_ack(msg)
            else:
                await link.send(_not_owner(msg.job_id))
        elif isinstance(msg, proto.Cancel):
            await self._on_cancel(link, msg)
        elif isinstance(msg, proto.Attach):
            await self._on_attach(link, msg)
        else:
            _log.warning("unexpected message ignored", ctx={"type": msg.type})

    # ------------------------------------------------------------------ job requests

    def _queue_position(self) -> int:
        busy = sum(1 for j in self.jobs.values()
                   if j.machine.state in (JobState.QUEUED, JobState.RUNNING))
        return max(0, busy - self.job_slots + 1)

    async def _on_request(self, link: PeerLink, req: proto.JobRequest) -> None:
        if req.job_id in self.jobs or self.outbox.has(req.job_id):
            await link.send(proto.JobRejected(job_id=req.job_id, error=ErrorEnvelope(
                code="DUPLICATE_JOB", message=f"job {req.job_id} already exists",
                hint="attach to it, or submit with a new job id")))
            return
        owner = owner_of(link)
        open_jobs = sum(1 for j in self.jobs.values()
                        if j.owner == owner and not j.machine.terminal)
        if open_jobs >= self.max_queued_jobs:
            _log.warning("job refused: too many for this client",
                         ctx={"job": req.job_id, "client": owner, "open": open_jobs})
            await link.send(proto.JobRejected(job_id=req.job_id, error=ErrorEnvelope(
                code="TOO_MANY_JOBS",
                message=f"you already have {open_jobs} unfinished jobs on this worker "
                        f"(limit {self.max_queued_jobs})",
                hint="wait for some to finish, or raise [worker] max_queued_jobs_per_client")))
            return
        inp = req.input
        if isinstance(inp, proto.SharedInput):
            answer = await self._resolve_shared(req.job_id, inp)
            if not isinstance(answer, Path):
                _log.info("shared input refused", ctx={"job": req.job_id, "reply": answer.type})
                await link.send(answer)
                return
            job = WorkerJob(req, JobMachine(req.job_id), "shared", input_path=answer, link=link)
            needs = False
        else:
            try:
                self.cache.check_accept(inp.size)
                cached = self.cache.lookup(inp.sha256)
                if cached is None:
                    await self.cache.reserve(inp.size, keep=inp.sha256)
            except RtcAnnotatorError as exc:
                await link.send(proto.JobRejected(job_id=req.job_id, error=exc.envelope()))
                return
            # pinned from now until the job ends: eviction never takes a file a job uses
            self.cache.pin(inp.sha256)
            job = WorkerJob(req, JobMachine(req.job_id), "cached" if cached else "rtc",
                            input_path=cached, link=link, pinned=inp.sha256)
            needs = cached is None
        job.owner = owner
        self.jobs[req.job_id] = job
        if owner is not None:
            await self.outbox.set_owner(req.job_id, owner)
        if needs:
            job.machine.state = JobState.WAITING_INPUT
        else:
            job.machine.state = JobState.QUEUED
        await link.send(proto.JobAccepted(job_id=req.job_id, queue_position=self._queue_position(),
                                          needs_transfer=needs))
        _log.info("job accepted", ctx={"job": req.job_id, "transfer": job.transfer})
        job.task = asyncio.create_task(self._run(job))

    async def _resolve_shared(
        self, job_id: str, inp: proto.SharedInput
    ) -> Path | proto.PeerMessage:
        try:
            path = self.storage.resolve_path(inp.storage_backend, inp.user_subdir,
                                             inp.relative_path)
        except UnknownBackend as exc:
            return proto.BackendNotAvailable(job_id=job_id, storage_backend=inp.storage_backend,
                                             message=exc.message)
        except PathRejected as exc:
            reason: proto.PathReason = "escape" if "leaves" in exc.message else "invalid"
            return proto.PathErrorMsg(job_id=job_id, reason=reason, message=exc.message)

        def check() -> proto.PathReason | None:
            if not path.is_file():
                return "missing"
            if os.path.getsize(path) != inp.size:
                return "size_mismatch"
            if proto.fingerprint_file(path) != inp.fingerprint:
                return "fingerprint_mismatch"
            return None

        try:
            problem = await asyncio.to_thread(check)
        except OSError as exc:
            return proto.PathErrorMsg(job_id=job_id, reason="missing",
                                      message=f"cannot read the file ({exc.strerror})")
        if problem is not None:
            text = {"missing": "file not found on this worker's mount",
                    "size_mismatch": "file size differs on this worker's mount",
                    "fingerprint_mismatch": "file content differs on this worker's mount"}[problem]
            return proto.PathErrorMsg(job_id=job_id, reason=problem,
                                      message=f"{text} of {inp.storage_backend!r}")
        return path

    # ------------------------------------------------------------------ transfers

    def _transfer_progress(self, job_id: str, link: PeerLink) -> Callable[[int, int], Any]:
        async def progress(done: int, total: int) -> None:
            with contextlib.suppress(LinkClosed, ValueError):
                await link.send(proto.Progress(job_id=job_id, stage="transfer",
                                               fraction=min(1.0, done / max(total, 1)),
                                               bytes=done))
        return progress

    async def _receive(self, receiver: FileReceiver) -> None:
        await receiver.start()
        await receiver.done.wait()
        if receiver.error is not None and receiver.error.code != "PEER_GONE":
            for job in list(self.jobs.values()):
                inp = job.request.input
                if (job.machine.state is JobState.WAITING_INPUT
                        and isinstance(inp, proto.RtcInput)
                        and inp.sha256 == receiver.offer.sha256 and job.task is not None):
                    job.task.cancel(receiver.error.envelope())  # type: ignore[arg-type]

    # ------------------------------------------------------------------ running

    async def _run(self, job: WorkerJob) -> None:
        log = get_logger(__name__, job=job.job_id)
        timings: dict[str, Any] = {}
        try:
            inp = job.request.input
            if job.machine.state is JobState.WAITING_INPUT:
                assert isinstance(inp, proto.RtcInput)
                await self.cache.arrived(inp.sha256).wait()
                job.input_path = self.cache.lookup(inp.sha256)
                job.machine.state = JobState.QUEUED
            async with self._slots:
                job.machine.state = JobState.RUNNING
                log.info("job running", ctx={"transfer": job.transfer})
                assert job.input_path is not None
                timings = await self.executor(job.request, job.input_path,
                                              self._emitter(job), self._progress(job))
        except asyncio.CancelledError as exc:
            envelope = (exc.args[0] if exc.args and isinstance(exc.args[0], ErrorEnvelope)
                        else ErrorEnvelope(code="CANCELLED", message="job cancelled by the client"))
            await self._finish(job, error=envelope)
            return
        except RtcAnnotatorError as exc:
            await self._finish(job, error=exc.envelope())
            return
        except Exception as exc:
            log.exception("executor crashed")
            await self._finish(job, error=ErrorEnvelope(
                code="INTERNAL_ERROR", message=f"job failed ({type(exc).__name__})",
                hint="see the worker log"))
            return
        await self._finish(job, stats=timings)

    async def _finish(self, job: WorkerJob, *, error: ErrorEnvelope | None = None,
                      stats: dict[str, Any] | None = None) -> None:
        """The one place a job ends: state, outbox record, message to the client."""
        last = self.outbox.last_seq(job.job_id)
        final: proto.JobDone | proto.JobFailed
        if error is None:
            raw = (stats or {}).get("pipelines", stats) or {}
            final = proto.JobDone(job_id=job.job_id, last_seq=last, transfer=job.transfer,
                                  pipelines={k: proto.PipelineStats(**v) for k, v in raw.items()})
            job.machine.state = JobState.DONE
        else:
            final = proto.JobFailed(job_id=job.job_id, last_seq=last, error=error)
            job.machine.state = (JobState.CANCELLED if error.code == "CANCELLED"
                                 else JobState.FAILED)
        get_logger(__name__, job=job.job_id).info(
            "job finished", ctx={"state": job.machine.state.value, "batches": last,
                                 "code": error.code if error else None})
        if job.pinned is not None:
            self.cache.unpin(job.pinned)
            job.pinned = None
        async with job.lock:
            await self.outbox.finish(job.job_id, final)
            job.final = final
            await self._deliver(job, final)

    def _emitter(self, job: WorkerJob) -> Emit:
        async def emit(envelopes: list[dict[str, Any]]) -> None:
            async with job.lock:
                batch = await self.outbox.append(job.job_id, envelopes)
                await self._deliver(job, batch)
        return emit

    def _progress(self, job: WorkerJob) -> ProgressCb:
        async def progress(stage: str, fraction: float, bytes: int | None = None,
                           rate: float | None = None) -> None:
            await self._deliver(job, proto.Progress(
                job_id=job.job_id, stage=stage, fraction=max(0.0, min(1.0, fraction)),
                bytes=bytes, rate=rate))
        return progress

    async def _deliver(self, job: WorkerJob, msg: proto.PeerMessage) -> None:
        link = job.link
        if link is None:
            return
        try:
            await link.send(msg)
        except LinkClosed:
            job.link = None

    # ------------------------------------------------------------------ disk hygiene

    async def expire_outbox(self, max_age_s: float, *,
                            now: float | None = None) -> list[OutboxEntry]:
        """Remove outbox entries of ended jobs nobody reattached to within ``max_age_s``."""
        active = {job_id for job_id, job in self.jobs.items() if not job.machine.terminal}
        expired = await asyncio.to_thread(self.outbox.expire, max_age_s, active=active, now=now)
        for entry in expired:
            self.jobs.pop(entry.job_id, None)
        return expired

    # ------------------------------------------------------------------ acks and attach

    async def _on_ack(self, ack: proto.ArtifactAck) -> None:
        await self.outbox.ack(ack.job_id, ack.seq)
        job = self.jobs.get(ack.job_id)
        if ack.final and (job is None or job.machine.terminal):
            await self.outbox.drop(ack.job_id)
            self.jobs.pop(ack.job_id, None)

    async def _owned(self, link: PeerLink, job_id: str) -> bool:
        """May ``link`` act on ``job_id``? Unknown jobs: yes (the caller answers UNKNOWN_JOB)."""
        job = self.jobs.get(job_id)
        owner = job.owner if job is not None else await self.outbox.owner(job_id)
        if job is None and owner is None:
            return True
        if owner == owner_of(link):
            return True
        _log.warning("refused: not the job's owner",
                     ctx={"job": job_id, "client": owner_of(link), "link": link.id})
        return False

    async def _on_cancel(self, link: PeerLink, msg: proto.Cancel) -> None:
        job = self.jobs.get(msg.job_id)
        if job is None and not self.outbox.has(msg.job_id):
            await link.send(proto.JobRejected(job_id=msg.job_id, error=ErrorEnvelope(
                code="UNKNOWN_JOB", message=f"this worker has no job {msg.job_id} to cancel",
                hint="the job finished and was acknowledged, or ran on another worker")))
            return
        if not await self._owned(link, msg.job_id):
            await link.send(_not_owner(msg.job_id))
            return
        if job is None or job.task is None or job.machine.terminal:
            await link.send(proto.JobRejected(job_id=msg.job_id, error=ErrorEnvelope(
                code="JOB_ENDED", message=f"job {msg.job_id} already ended, nothing to cancel",
                hint="attach to it to fetch its results")))
            return
        _log.info("cancel requested", ctx={"job": msg.job_id})
        job.task.cancel()

    async def _on_attach(self, link: PeerLink, msg: proto.Attach) -> None:
        job = self.jobs.get(msg.job_id)
        known_on_disk = self.outbox.has(msg.job_id)
        if job is None and not known_on_disk:
            await link.send(proto.JobRejected(job_id=msg.job_id, error=ErrorEnvelope(
                code="UNKNOWN_JOB", message=f"this worker has no job {msg.job_id}",
                hint="the job finished and was acknowledged, or ran on another worker")))
            return
        if not await self._owned(link, msg.job_id):
            await link.send(_not_owner(msg.job_id))
            return
        await self.outbox.ack(msg.job_id, msg.last_acked_seq)
        if job is not None:
            async with job.lock:
                previous = job.link
                job.link = link
                if previous is not None and previous is not link:
                    _log.info("stream moved to another link of the owner",
                              ctx={"job": msg.job_id, "from": previous.id, "to": link.id})
                    with contextlib.suppress(LinkClosed):
                        await previous.send(proto.JobMoved(
                            job_id=msg.job_id,
                            message="the job's results now go to another connection of yours"))
                needs = job.machine.state is JobState.WAITING_INPUT
                await link.send(proto.JobAccepted(job_id=msg.job_id, needs_transfer=needs,
                                                  queue_position=self._queue_position()))
                await self._replay(link, msg)
                if job.final is not None:
                    await link.send(job.final)
            _log.info("client reattached", ctx={"job": msg.job_id, "after": msg.last_acked_seq})
            return
        # Known only from the outbox: this worker restarted since.
        await link.send(proto.JobAccepted(job_id=msg.job_id, queue_position=0))
        await self._replay(link, msg)
        final = await self.outbox.final(msg.job_id)
        if final is None:
            final = proto.JobFailed(
                job_id=msg.job_id, last_seq=self.outbox.last_seq(msg.job_id),
                error=ErrorEnvelope(code="WORKER_RESTARTED",
                                    message="the worker restarted while the job ran",
                                    hint="submit the job again; results so far were replayed"))
            await self.outbox.finish(msg.job_id, final)
        await link.send(final)

    async def _replay(self, link: PeerLink, msg: proto.Attach) -> None:
        for batch in await self.outbox.pending(msg.job_id, msg.last_acked_seq):
            await link.send(batch)
