"""Client side of the job exchange over one :class:`PeerLink`.

:class:`ClientSession` submits jobs and follows them to the end. Each ``ARTIFACT_BATCH`` is handed
to the injected ``sink`` (``Store.ingest``: one transaction, idempotent on ``artifact_id``) and
acked only after the sink returned, in sequence order; a replayed batch already stored is acked
again without reaching the sink. After a drop, open a new link and call :meth:`attach` with the
highest sequence number the store holds.

Input choice: with ``transfer="auto"`` a file under one of the client's storage backends goes as a
shared path; ``BACKEND_NOT_AVAILABLE`` or ``PATH_ERROR`` with reason ``missing``,
``size_mismatch`` or ``fingerprint_mismatch`` falls back to sending the file (``rtc``); an escape
or invalid path is an error. The method used is logged and returned (``shared``, ``rtc``,
``cached`` when the worker already held the file's sha256).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rtc_annotator.errors import ErrorEnvelope, RtcAnnotatorError
from rtc_annotator.logs import get_logger
from rtc_annotator.protocol import peer as proto
from rtc_annotator.storage import StorageConfig, StorageResolver
from rtc_annotator.transport.filetransfer import (
    ChunkHook,
    ProgressFn,
    TransferError,
    send_file,
    sha256_file,
)
from rtc_annotator.transport.peer import LinkClosed, PeerLink

Sink = Callable[[list[dict[str, Any]]], Awaitable[None]]
ProgressHandler = Callable[[proto.Progress], Awaitable[None] | None]
FALLBACK_REASONS = frozenset({"missing", "size_mismatch", "fingerprint_mismatch"})

_log = get_logger(__name__)
_sha_cache: dict[tuple[str, int, int], str] = {}


async def file_sha256(path: Path) -> str:
    """sha256 of a local file, in a thread, remembered per (path, size, mtime)."""
    st = await asyncio.to_thread(os.stat, path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        _sha_cache[key] = await asyncio.to_thread(sha256_file, path)
    return _sha_cache[key]


@dataclass
class JobResult:
    """How a job ended, as the client saw it."""

    job_id: str
    ok: bool
    transfer: str = ""
    """shared, rtc or cached (how the input reached the worker)."""
    sent_bytes: int = 0
    """File bytes this client sent for the job on this session."""
    last_seq: int = 0
    batches: int = 0
    """Batches handed to the sink by this session."""
    envelopes: int = 0
    pipelines: dict[str, proto.PipelineStats] = field(default_factory=dict)
    error: ErrorEnvelope | None = None


class JobInterrupted(RtcAnnotatorError):
    """The link dropped while following a job; attach on a new link."""

    code = "PEER_GONE"
    default_hint = "reconnect and run `jobs attach JOB`"


@dataclass
class _JobView:
    job_id: str
    last_seq: int = 0
    queue: asyncio.Queue[proto.PeerMessage | None] = field(default_factory=asyncio.Queue)


class ClientSession:
    """Submit, attach and cancel jobs on one link."""

    def __init__(self, link: PeerLink, sink: Sink, *, storage: StorageConfig | None = None,
                 on_progress: ProgressHandler | None = None,
                 transfer_progress: ProgressFn | None = None,
                 chunk_hook: ChunkHook | None = None) -> None:
        self.link = link
        self.sink = sink
        self.resolver = StorageResolver(storage) if storage is not None else None
        self.on_progress = on_progress
        self.transfer_progress = transfer_progress
        self.chunk_hook = chunk_hook
        self._jobs: dict[str, _JobView] = {}
        self._transfers: dict[int, asyncio.Queue[proto.TransferStatus]] = {}
        self._transfer_nos = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    # ------------------------------------------------------------------ reader

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.link.recv()
                if isinstance(msg, proto.TransferStatus):
                    q = self._transfers.get(msg.transfer_no)
                    if q is not None:
                        q.put_nowait(msg)
                    continue
                job_id = getattr(msg, "job_id", None)
                view = self._jobs.get(job_id) if isinstance(job_id, str) else None
                if view is None:
                    _log.debug("message for no followed job", ctx={"type": msg.type})
                    continue
                view.queue.put_nowait(msg)
        except LinkClosed:
            pass
        finally:
            for view in self._jobs.values():
                view.queue.put_nowait(None)

    def _register(self, view: _JobView) -> _JobView:
        if view.job_id in self._jobs:
            raise RtcAnnotatorError(f"job {view.job_id} is already followed on this session",
                                    code="DUPLICATE_JOB", hint="use a new job id")
        self._jobs[view.job_id] = view
        if self._reader.done():  # the link is gone: fail fast instead of waiting forever
            view.queue.put_nowait(None)
        return view

    async def _next(self, view: _JobView) -> proto.PeerMessage:
        while True:
            msg = await view.queue.get()
            if msg is None:
                view.queue.put_nowait(None)
                raise JobInterrupted(f"link lost while following job {view.job_id} "
                                     f"({self.link.close_reason})")
            if isinstance(msg, proto.Progress):
                await self._progress(msg)
                continue
            return msg

    async def _progress(self, msg: proto.Progress) -> None:
        if self.on_progress is not None:
            res = self.on_progress(msg)
            if asyncio.iscoroutine(res):
                await res

    # ------------------------------------------------------------------ submit

    async def describe(self, path: Path, transfer: str) -> tuple[proto.SharedInput | None, Path]:
        """Shared description of ``path`` when it lies on one of our backends (else None)."""
        path = Path(await asyncio.to_thread(os.path.abspath, path))
        if transfer == "rtc" or self.resolver is None:
            return None, path
        loc = self.resolver.locate(path)
        if loc is None:
            if transfer == "shared":
                raise RtcAnnotatorError(f"{path.name} is not on any configured storage backend",
                                        code="NOT_UNDER_BACKEND",
                                        hint="use transfer auto or rtc, or add a [storage.*]")
            return None, path
        size = await asyncio.to_thread(os.path.getsize, path)
        fp = await asyncio.to_thread(proto.fingerprint_file, path)
        return proto.SharedInput(storage_backend=loc.storage_backend, user_subdir=loc.user_subdir,
                                 relative_path=loc.relative_path, size=size, fingerprint=fp), path

    async def _rtc_input(self, path: Path) -> proto.RtcInput:
        size = await asyncio.to_thread(os.path.getsize, path)
        return proto.RtcInput(name=path.name, size=size, sha256=await file_sha256(path))

    async def submit(self, input_path: Path | str, *, pipelines: dict[str, dict[str, Any]],
                     model_profile: str = "balanced", job_id: str | None = None,
                     transfer: Literal["auto", "shared", "rtc"] = "auto") -> JobResult:
        """Run one job to its end; :class:`JobInterrupted` if the link drops on the way."""
        job_id = job_id or uuid.uuid4().hex
        view = self._register(_JobView(job_id))
        log = get_logger(__name__, job=job_id)
        shared, path = await self.describe(Path(input_path), transfer)
        inp: proto.SharedInput | proto.RtcInput = shared or await self._rtc_input(path)
        method = "shared" if shared else "rtc"
        await self.link.send(proto.JobRequest(job_id=job_id, pipelines=pipelines,
                                              model_profile=model_profile, input=inp))
        reply = await self._next(view)
        fallback = isinstance(reply, proto.BackendNotAvailable) or (
            isinstance(reply, proto.PathErrorMsg) and reply.reason in FALLBACK_REASONS)
        if fallback and transfer != "shared":
            log.info("shared input refused, sending the file instead",
                     ctx={"reply": reply.type, "reason": getattr(reply, "reason", None)})
            inp = await self._rtc_input(path)
            method = "rtc"
            await self.link.send(proto.JobRequest(job_id=job_id, pipelines=pipelines,
                                                  model_profile=model_profile, input=inp))
            reply = await self._next(view)
        result = JobResult(job_id=job_id, ok=False, transfer=method)
        if not isinstance(reply, proto.JobAccepted):
            self._jobs.pop(job_id, None)
            result.error = _reply_error(reply)
            log.warning("job not accepted", ctx={"code": result.error.code})
            return result
        if isinstance(inp, proto.RtcInput):
            if reply.needs_transfer:
                result.sent_bytes = await self._send_input(job_id, path, inp.sha256)
            else:
                method = result.transfer = "cached"
        log.info("job submitted", ctx={"transfer": method, "queue": reply.queue_position})
        return await self._follow(view, result)

    async def _send_input(self, job_id: str, path: Path, sha256: str) -> int:
        transfer_no = next(self._transfer_nos)
        queue: asyncio.Queue[proto.TransferStatus] = asyncio.Queue()
        self._transfers[transfer_no] = queue
        try:
            sent = await send_file(self.link, path, job_id=job_id, sha256=sha256,
                                   transfer_no=transfer_no, statuses=queue,
                                   progress=self.transfer_progress, chunk_hook=self.chunk_hook)
        except LinkClosed as exc:
            raise JobInterrupted(f"link lost while sending the input of job {job_id}") from exc
        except TransferError as exc:
            # The worker fails the job too; its JOB_FAILED ends the follow loop.
            _log.warning("input transfer failed", ctx={"job": job_id, "code": exc.code})
            return 0
        finally:
            self._transfers.pop(transfer_no, None)
        return sent.sent_bytes

    # ------------------------------------------------------------------ follow, attach, cancel

    async def _follow(self, view: _JobView, result: JobResult) -> JobResult:
        while True:
            msg = await self._next(view)
            if isinstance(msg, proto.ArtifactBatch):
                if msg.seq <= view.last_seq:
                    await self.link.send(proto.ArtifactAck(job_id=view.job_id, seq=view.last_seq))
                    continue
                if msg.seq != view.last_seq + 1:
                    _log.warning("batch out of order ignored",
                                 ctx={"job": view.job_id, "seq": msg.seq, "have": view.last_seq})
                    continue
                await self.sink(msg.envelopes)
                view.last_seq = msg.seq
                result.batches += 1
                result.envelopes += len(msg.envelopes)
                await self.link.send(proto.ArtifactAck(job_id=view.job_id, seq=msg.seq))
            elif isinstance(msg, proto.JobDone | proto.JobFailed):
                result.last_seq = view.last_seq
                result.ok = isinstance(msg, proto.JobDone)
                if isinstance(msg, proto.JobDone):
                    result.pipelines = dict(msg.pipelines)
                    result.transfer = msg.transfer
                else:
                    result.error = msg.error
                with contextlib.suppress(LinkClosed):
                    await self.link.send(proto.ArtifactAck(job_id=view.job_id, seq=view.last_seq,
                                                           final=True))
                self._jobs.pop(view.job_id, None)
                _log.info("job ended", ctx={"job": view.job_id, "ok": result.ok,
                                            "transfer": result.transfer,
                                            "batches": view.last_seq})
                return result
            elif isinstance(msg, proto.JobRejected):
                result.error = msg.error
                self._jobs.pop(view.job_id, None)
                return result
            elif isinstance(msg, proto.JobMoved):
                _log.warning("job followed on another link now", ctx={"job": view.job_id})
                result.last_seq = view.last_seq
                result.error = ErrorEnvelope(
                    code="JOB_MOVED", message=msg.message or "the job moved to another link",
                    hint="another connection of yours attached to this job")
                self._jobs.pop(view.job_id, None)
                return result

    async def attach(self, job_id: str, *, last_acked_seq: int = 0,
                     input_path: Path | str | None = None) -> JobResult:
        """Follow a job submitted earlier (possibly on another link) from ``last_acked_seq``.

        ``input_path`` is needed only when the worker still waits for an rtc input (a transfer
        that dropped); the transfer then resumes from the worker's verified byte count.
        """
        view = self._register(_JobView(job_id, last_seq=last_acked_seq))
        await self.link.send(proto.Attach(job_id=job_id, last_acked_seq=last_acked_seq))
        reply = await self._next(view)
        result = JobResult(job_id=job_id, ok=False)
        if not isinstance(reply, proto.JobAccepted):
            self._jobs.pop(job_id, None)
            result.error = _reply_error(reply)
            return result
        if reply.needs_transfer:
            if input_path is None:
                self._jobs.pop(job_id, None)
                result.error = ErrorEnvelope(code="INPUT_NEEDED",
                                             message="the worker still waits for the input file",
                                             hint="attach again giving the input file")
                return result
            path = Path(await asyncio.to_thread(os.path.abspath, input_path))
            result.transfer = "rtc"
            result.sent_bytes = await self._send_input(job_id, path, await file_sha256(path))
        _log.info("attached", ctx={"job": job_id, "after": last_acked_seq})
        return await self._follow(view, result)

    async def cancel(self, job_id: str) -> None:
        await self.link.send(proto.Cancel(job_id=job_id))


def _reply_error(reply: proto.PeerMessage) -> ErrorEnvelope:
    if isinstance(reply, proto.JobRejected | proto.JobFailed):
        return reply.error
    if isinstance(reply, proto.BackendNotAvailable):
        return ErrorEnvelope(code="BACKEND_NOT_AVAILABLE", message=reply.message,
                             hint="send the file (transfer auto or rtc)")
    if isinstance(reply, proto.PathErrorMsg):
        return ErrorEnvelope(code="PATH_ERROR", message=f"{reply.reason}: {reply.message}",
                             hint="the file must lie inside the backend on both sides")
    return ErrorEnvelope(code="PROTOCOL_ERROR", message=f"unexpected reply {reply.type}")
