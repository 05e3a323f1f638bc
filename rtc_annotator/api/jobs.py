"""Jobs from the browser: ``serve`` acts as the client.

:class:`JobManager` runs each submitted job with the very code of ``rtc-annotator submit``
(:func:`~rtc_annotator.client.submit.submit_video`) and the same local job registry
(``[client] jobs_dir``), so ``rtc-annotator jobs list|attach|cancel`` and the page see the same
jobs. Every event of a running job (hashing, routing, queued, routed, upload, progress,
artifacts, rerouted, ...) updates its live state, which is pushed to the subscribers of
``GET /v1/jobs/events`` (server-sent events).

Cancelling a job this server runs stops the local follower (the worker keeps the job, as after
Ctrl-C) and then attaches to it with ``cancel`` (:func:`~rtc_annotator.client.submit.cancel_job`),
exactly as ``rtc-annotator jobs cancel`` does; a job still waiting for a worker is withdrawn
from the route queue by closing its signaling connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from rtc_annotator.client.jobs import JobRecord, JobRegistry, JobStatus, UnknownJob
from rtc_annotator.config import MODEL_PROFILES, Settings
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.logs import get_logger
from rtc_annotator.store import Store
from rtc_annotator.transport.peer import LinkOptions

log = get_logger(__name__)


class JobEnded(RtcAnnotatorError):
    """The job already ended; there is nothing to cancel."""

    code = "JOB_ENDED"
    default_hint = "its results are in the store"


class NotConfigured(RtcAnnotatorError):
    """``serve`` cannot act as a client without a signaling URL and client token."""

    code = "NOT_CONFIGURED"
    default_hint = ("set [signaling] url and token (a client token from the room admin) in the "
                    "config that `serve` reads")


class JobRequest(BaseModel):
    """Body of ``POST /v1/jobs``."""

    video: str = Field(min_length=1, max_length=4096,
                       description="Absolute path of the video on the machine running serve.")
    pipelines: list[str] = Field(min_length=1, max_length=16,
                                 description="Pipelines to run, e.g. [\"metadata\", \"scenes\"].")
    options: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                               description="Per-pipeline options.")
    profile: str = Field(default="balanced", description="fast, balanced or high_quality.")
    transfer: Literal["auto", "shared", "rtc"] = Field(
        default="auto", description="auto, shared (never send the file) or rtc (always).")

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        if v not in MODEL_PROFILES:
            raise ValueError(f"unknown profile {v!r} (use {', '.join(MODEL_PROFILES)})")
        return v

    @field_validator("pipelines")
    @classmethod
    def _pipelines(cls, v: list[str]) -> list[str]:
        names = [p.strip() for p in v if p.strip()]
        if not names:
            raise ValueError("name at least one pipeline")
        return names


@dataclass
class LiveJob:
    """What this server knows of a job it runs, beyond its registry record."""

    job_id: str
    video: str
    pipelines: list[str]
    phase: str = "starting"
    queue_position: int | None = None
    worker: str | None = None
    decision: str = ""
    upload_done: int = 0
    upload_total: int = 0
    upload_started: float | None = None
    upload_last: float | None = None
    connected_at: float | None = None
    progress: dict[str, float] = field(default_factory=dict)
    artifacts: int = 0
    error: dict[str, str] | None = None
    ok: bool | None = None
    task: asyncio.Task[Any] | None = None

    def view(self) -> dict[str, Any]:
        mbps: float | None = None
        eta: float | None = None
        if self.upload_started is not None and self.upload_last is not None and self.upload_done:
            elapsed = max(self.upload_last - self.upload_started, 1e-3)
            rate = self.upload_done / elapsed
            mbps = round(rate / 1e6, 2)
            if self.upload_total:
                eta = round(max(self.upload_total - self.upload_done, 0) / max(rate, 1.0), 1)
        return {"phase": self.phase, "queue_position": self.queue_position,
                "worker": self.worker, "decision": self.decision,
                "upload": {"done": self.upload_done, "total": self.upload_total,
                           "mb_per_s": mbps, "eta_s": eta},
                "progress": dict(self.progress), "artifacts": self.artifacts,
                "error": self.error, "ok": self.ok,
                "running": self.task is not None and not self.task.done()}


class JobManager:
    """Submits, lists, follows and cancels jobs for the HTTP API."""

    def __init__(self, settings: Settings, store: Store, *,
                 link_options: LinkOptions | None = None) -> None:
        self.settings = settings
        self.store = store
        self.registry = JobRegistry(settings.client.jobs_path())
        self.link_options = link_options
        self.live: dict[str, LiveJob] = {}
        self._seq = itertools.count(1)
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()

    # ---------------------------------------------------------------- events

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue of job views; ``None`` means the server is stopping (end the stream)."""
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=1000)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(q)

    def end_streams(self) -> None:
        """Tell every event stream to end (server shutdown)."""
        for q in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)

    async def _publish(self, job_id: str) -> None:
        try:
            view = await self.get(job_id)
        except UnknownJob:
            return
        for q in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(view)

    def _on_event(self, live: LiveJob) -> Any:
        async def on_event(kind: str, data: dict[str, Any]) -> None:
            if kind == "hashing":
                live.phase = "hashing"
            elif kind == "routing":
                live.phase = "routing"
            elif kind == "queued":
                live.phase, live.queue_position = "queued", data.get("position")
            elif kind == "routed":
                live.phase, live.queue_position = "connecting", None
                live.worker, live.decision = data.get("worker"), str(data.get("decision", ""))
            elif kind == "connected":
                live.phase, live.connected_at = "running", time.monotonic()
            elif kind == "upload":
                now = time.monotonic()
                if live.upload_started is None:  # the file goes out right after connecting
                    live.upload_started = live.connected_at or now
                live.upload_last = now
                live.upload_done, live.upload_total = int(data["done"]), int(data["total"])
                live.phase = "upload" if live.upload_done < live.upload_total else "running"
            elif kind == "progress":
                stage = str(data.get("stage", ""))
                if stage and stage != "transfer":
                    live.phase = "running"
                    live.progress[stage] = float(data.get("fraction") or 0.0)
            elif kind == "artifacts":
                live.artifacts += int(data.get("count", 0))
            elif kind == "rerouted":
                live.phase, live.worker = "rerouting", None
            await self._publish(live.job_id)

        return on_event

    # ---------------------------------------------------------------- operations

    def _check_configured(self) -> None:
        sig = self.settings.signaling
        if not sig.url or not sig.token:
            raise NotConfigured("serve has no signaling token to submit jobs with")

    async def submit(self, req: JobRequest) -> dict[str, Any]:
        """Start a job; answers at once with its id (follow it through the events)."""
        from rtc_annotator.client.submit import submit_video

        self._check_configured()
        raw = await asyncio.to_thread(os.path.expanduser, req.video)
        if not os.path.isabs(raw):
            raise RtcAnnotatorError(f"video path must be absolute, got {req.video[:200]!r}",
                                    code="VIDEO_ERROR",
                                    hint="give the full path of the file on this machine")
        video = Path(raw)
        if not await asyncio.to_thread(video.is_file):
            raise RtcAnnotatorError(f"video not found: {video}", code="VIDEO_ERROR",
                                    hint="check the path on the machine running serve")
        job_id = uuid.uuid4().hex[:16]
        live = LiveJob(job_id, str(video), list(req.pipelines))
        self.live[job_id] = live

        async def run() -> None:
            try:
                result = await submit_video(
                    self.settings, video, store=self.store, pipelines=req.pipelines,
                    profile=req.profile, options=req.options, transfer=req.transfer,
                    link_options=self.link_options, job_id=job_id, jobs=self.registry,
                    on_event=self._on_event(live))
                live.ok = result.ok
                live.phase = "done" if result.ok else "failed"
                if result.error is not None:
                    live.error = result.error.model_dump()
                    if result.error.code == "CANCELLED":
                        live.phase = "cancelled"
            except asyncio.CancelledError:
                live.phase = "stopped"
                raise
            except RtcAnnotatorError as exc:
                live.ok, live.phase, live.error = False, "failed", exc.envelope().model_dump()
            except Exception as exc:  # a bug must not leave the page waiting forever
                log.exception("job task failed", ctx={"job": job_id})
                live.ok, live.phase = False, "failed"
                live.error = {"code": "INTERNAL_ERROR", "message": str(exc)[:200],
                              "hint": "see the server log"}
            finally:
                with contextlib.suppress(Exception):
                    await self._publish(job_id)

        live.task = asyncio.create_task(run(), name=f"job-{job_id}")
        log.info("job submitted from the API",
                 ctx={"job": job_id, "pipelines": ",".join(req.pipelines)})
        await self._publish(job_id)
        return await self.get(job_id)

    async def get(self, job_id: str) -> dict[str, Any]:
        live = self.live.get(job_id)
        try:
            record: JobRecord | None = await self.registry.get(job_id)
        except UnknownJob:
            if live is None:
                raise
            record = None
        return self._view(job_id, record, live)

    def _view(self, job_id: str, record: JobRecord | None, live: LiveJob | None
              ) -> dict[str, Any]:
        if record is not None:
            body = record.model_dump(mode="json")
        else:
            assert live is not None
            body = {"job_id": job_id, "video": live.video, "asset_id": "",
                    "pipelines": live.pipelines, "status": JobStatus.ROUTING.value,
                    "worker": None, "artifacts": 0, "error": None}
        body["live"] = live.view() if live is not None else None
        body["seq"] = next(self._seq)  # newer views of a job have higher numbers
        return body

    async def list(self) -> list[dict[str, Any]]:
        records = {r.job_id: r for r in await self.registry.list()}
        views = [self._view(job_id, rec, self.live.get(job_id))
                 for job_id, rec in records.items()]
        views += [self._view(job_id, None, live) for job_id, live in self.live.items()
                  if job_id not in records]
        return sorted(views, key=lambda v: str(v.get("created_at", "~")), reverse=True)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        from rtc_annotator.client.submit import cancel_job

        live = self.live.get(job_id)
        running = live is not None and live.task is not None and not live.task.done()
        try:
            record: JobRecord | None = await self.registry.get(job_id)
        except UnknownJob:
            if not running:
                raise
            record = None
        if not running and record is not None and record.status.terminal:
            raise JobEnded(f"job {job_id} already ended ({record.status.value})")
        if running:
            assert live is not None and live.task is not None
            live.task.cancel()
            with contextlib.suppress(BaseException):
                await live.task
            live.task = None
            with contextlib.suppress(UnknownJob):
                record = await self.registry.get(job_id)
        if record is None or record.worker is None:
            # never reached a worker: closing its signaling connection left the queue
            if record is not None:
                record.set_status(JobStatus.CANCELLED, "CANCELLED: cancelled before routing")
                await self.registry.save(record)
            if live is not None:
                live.phase, live.ok = "cancelled", False
                live.error = {"code": "CANCELLED", "message": "cancelled before routing",
                              "hint": ""}
            await self._publish(job_id)
            return await self.get(job_id)
        self._check_configured()
        log.info("cancelling job", ctx={"job": job_id, "worker": record.worker})
        result = await cancel_job(self.settings, job_id, store=self.store, jobs=self.registry,
                                  link_options=self.link_options)
        if live is not None:
            live.ok = result.ok
            live.phase = "cancelled" if result.error and result.error.code == "CANCELLED" else (
                "done" if result.ok else "failed")
            live.error = result.error.model_dump() if result.error else None
        await self._publish(job_id)
        return await self.get(job_id)

    async def close(self) -> None:
        """Stop following the running jobs (they keep running on their workers)."""
        self.end_streams()
        tasks = [j.task for j in self.live.values() if j.task is not None and not j.task.done()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t


def parse_job_request(body: Any) -> JobRequest:
    """Validate a POST body; :class:`~rtc_annotator.api.errors.BadRequest` names the field."""
    from rtc_annotator.api.errors import BadRequest

    try:
        return JobRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise BadRequest(f"invalid job: {where}: {first['msg']}", field=where,
                         hint='e.g. {"video": "/data/a.mp4", "pipelines": ["metadata"]}'
                         ) from None
