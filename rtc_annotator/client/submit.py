"""Submit a video to a worker of the room and store what comes back.

:func:`submit_video` is the whole client side of one job:

1. describe the input: when the video lies on one of this machine's storage backends, the
   requirement ``required_storage`` names it, so the server prefers workers that mount it;
2. ask the signaling server for a worker (queue positions are reported through ``on_event``);
3. connect peer to peer (:class:`~rtc_annotator.transport.peer.PeerLink`, offerer);
4. submit through :class:`~rtc_annotator.transport.client_session.ClientSession`, which falls
   back from the shared path to sending the file when the worker answers
   ``BACKEND_NOT_AVAILABLE`` or ``PATH_ERROR`` (missing file);
5. write every batch into the store (one transaction per batch, idempotent) before acking it,
   and keep the ``runs`` rows: running on submit, then completed / failed / cancelled.
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

from rtc_annotator.config import Settings
from rtc_annotator.errors import ErrorEnvelope, RtcAnnotatorError
from rtc_annotator.logs import get_logger
from rtc_annotator.protocol import peer as proto
from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.storage import StorageResolver
from rtc_annotator.store import Store
from rtc_annotator.transport.client_session import ClientSession, file_sha256
from rtc_annotator.transport.peer import CallbackSignaler, LinkOptions, PeerLink
from rtc_annotator.worker.envelopes import run_id_for

EventHandler = Callable[[str, dict[str, Any]], Awaitable[None] | None]


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
    pipelines: dict[str, dict[str, float]] = field(default_factory=dict)
    error: ErrorEnvelope | None = None
    seconds: float = 0.0

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
        }


async def _notify(handler: EventHandler | None, kind: str, data: dict[str, Any]) -> None:
    if handler is None:
        return
    res = handler(kind, data)
    if asyncio.iscoroutine(res):
        await res


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
) -> SubmitResult:
    """Run one video through a worker of the room; never raises for a job-level failure."""
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

    own_signaling = signaling is None
    sig = signaling or SignalingClient.from_settings(settings.signaling)
    link: PeerLink | None = None
    session: ClientSession | None = None
    session_id: str | None = None
    try:
        if own_signaling:
            await sig.connect()

        async def on_queue(frame: dict[str, Any]) -> None:
            await _notify(on_event, "queued", {"position": frame.get("position")})

        await _notify(on_event, "routing", {"required_storage": required})
        routed = await sig.route(
            pipelines=pipelines,
            required_storage=required,
            strict=strict_storage,
            on_queue=on_queue,
        )
        session_id = str(routed["session_id"])
        result.worker = str(routed.get("worker"))
        decision = routed.get("decision") or {}
        result.decision = str(decision.get("reason", "")) if isinstance(decision, dict) else ""
        log.info("routed", ctx={"worker": result.worker, "decision": result.decision})
        await _notify(on_event, "routed", {"worker": result.worker, "decision": result.decision})

        base = link_options or LinkOptions(ice=settings.ice)
        options_ = LinkOptions(
            **{**base.__dict__, "extra_ice_servers": list(routed.get("ice_servers") or [])}
        )
        sid = session_id
        signaler = CallbackSignaler(
            lambda data: sig.send_signal(sid, data), lambda: sig.next_signal(sid)
        )
        link = await PeerLink.connect(
            signaler, offer=True, role="client", name="client", options=options_
        )
        await _notify(on_event, "connected", {"worker": result.worker})

        await store.upsert_asset(asset_id, video.name, size)
        for name in pipelines:
            await store.start_run(
                run_id_for(job_id, name), asset_id, name, profile, result.worker or "", ""
            )

        async def sink(envelopes: list[dict[str, Any]]) -> None:
            await store.ingest(envelopes)
            result.artifacts += len(envelopes)
            await _notify(on_event, "artifacts", {"count": len(envelopes)})

        async def on_progress(msg: proto.Progress) -> None:
            await _notify(
                on_event,
                "progress",
                {"stage": msg.stage, "fraction": msg.fraction, "bytes": msg.bytes},
            )

        def on_transfer(done: int, total: int) -> None:
            if on_event is not None:
                res = on_event("upload", {"done": done, "total": total})
                if asyncio.iscoroutine(res):
                    asyncio.ensure_future(res)

        session = ClientSession(
            link,
            sink,
            storage=settings.storage_config() if transfer != "rtc" else None,
            on_progress=on_progress,
            transfer_progress=on_transfer,
        )
        job = await session.submit(
            video, pipelines=opts, model_profile=profile, job_id=job_id, transfer=transfer
        )
        result.ok = job.ok
        result.transfer = job.transfer
        result.sent_bytes = job.sent_bytes
        result.error = job.error
        result.pipelines = {
            k: {"artifacts": v.artifacts, "seconds": v.seconds} for k, v in job.pipelines.items()
        }
        log.info(
            "job ended",
            ctx={
                "ok": job.ok,
                "transfer": job.transfer,
                "sent_bytes": job.sent_bytes,
                "artifacts": result.artifacts,
                "worker": result.worker,
            },
        )
        await _finish_runs(store, job_id, pipelines, result)
    except RtcAnnotatorError as exc:
        result.error = exc.envelope()
        log.warning("job failed", ctx={"code": exc.code, "error": exc.message})
        with contextlib.suppress(Exception):
            await _finish_runs(store, job_id, pipelines, result)
    finally:
        if session is not None:
            await session.close()
        if link is not None:
            await link.close("job over")
        if session_id is not None:
            with contextlib.suppress(Exception):
                await sig.end_session(session_id, "client done")
        if own_signaling:
            await sig.close()
        result.seconds = loop.time() - started
    return result


async def _finish_runs(
    store: Store, job_id: str, pipelines: list[str], result: SubmitResult
) -> None:
    for name in pipelines:
        run_id = run_id_for(job_id, name)
        try:
            await store.get_run(run_id)
        except RtcAnnotatorError:
            continue  # never started (routing or connecting failed)
        if result.ok:
            await store.finish_run(run_id, "completed")
        elif result.error is not None and result.error.code == "CANCELLED":
            await store.finish_run(run_id, "cancelled", result.error.message)
        else:
            err = result.error
            await store.finish_run(
                run_id, "failed", f"{err.code}: {err.message}" if err else "unknown error"
            )
