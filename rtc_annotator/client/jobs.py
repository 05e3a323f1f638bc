"""The local job registry: jobs survive the client that submitted them.

One JSON file per job under ``[client] jobs_dir`` (``<job_id>.json``), replaced atomically
(temporary file, fsync, rename) each time the job moves on: routed, input sent, every batch
stored (``last_acked_seq``), ended. A client that is closed, killed or detached mid-job leaves
the record behind; ``rtc-annotator jobs attach JOB`` reads it to reconnect to the same worker
and asks for everything after ``last_acked_seq`` (the worker keeps unacked batches in its
outbox). ``last_acked_seq`` is written only after the batch is durable (store or spool), so it
never runs ahead of what this machine holds; a replayed batch is stored idempotently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.logs import get_logger
from rtc_annotator.protocol.peer import JOB_ID_PATTERN

_log = get_logger(__name__)
_JOB_ID = re.compile(JOB_ID_PATTERN)


class JobStatus(StrEnum):
    """Where a job stands, as this client last saw it."""

    ROUTING = "routing"
    RUNNING = "running"
    DETACHED = "detached"
    INTERRUPTED = "interrupted"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class UnknownJob(RtcAnnotatorError):
    """No record of that job on this machine."""

    code = "UNKNOWN_JOB"
    default_hint = "list the jobs this machine knows with `rtc-annotator jobs list`"


class JobRecord(BaseModel):
    """One job as recorded on the client."""

    job_id: str = Field(pattern=JOB_ID_PATTERN, description="The job id (also on the worker).")
    video: str = Field(description="Absolute path of the input video on this machine.")
    asset_id: str = Field(default="", description="sha256 of the video.")
    worker: str | None = Field(default=None, description="Worker running the job.")
    pipelines: list[str] = Field(default_factory=list, description="Pipelines requested.")
    options: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                               description="Per-pipeline options.")
    profile: str = Field(default="balanced", description="Model profile.")
    transfer: str = Field(default="", description="shared, rtc or cached once known.")
    last_acked_seq: int = Field(default=0, ge=0,
                                description="Highest batch stored here (store or spool).")
    artifacts: int = Field(default=0, ge=0, description="Envelopes stored so far.")
    status: JobStatus = Field(default=JobStatus.ROUTING, description="Last known status.")
    error: str | None = Field(default=None, description="code: message when it failed.")
    reroutes: list[str] = Field(default_factory=list,
                                description="Workers lost mid-job, in order.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC),
                                 description="When it was submitted.")
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC),
                                 description="Last change.")

    def set_status(self, status: JobStatus, error: str | None = None) -> None:
        """The one setter of :attr:`status` (logged)."""
        if status is not self.status:
            _log.info("job status", ctx={"job": self.job_id, "from": self.status.value,
                                         "to": status.value})
        self.status = status
        if error is not None:
            self.error = error


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class JobRegistry:
    """Job records under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, job_id: str) -> Path:
        if not _JOB_ID.match(job_id):
            raise UnknownJob(f"{job_id[:80]!r} is not a job id",
                             hint="job ids are letters, digits, '.', '_' and '-'")
        return self.directory / f"{job_id}.json"

    async def save(self, record: JobRecord) -> None:
        record.updated_at = datetime.now(UTC)
        data = record.model_dump_json(indent=2).encode()
        await asyncio.to_thread(_write_atomic, self.path(record.job_id), data)

    async def get(self, job_id: str) -> JobRecord:
        path = self.path(job_id)
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise UnknownJob(f"no job {job_id} on this machine") from None
        try:
            return JobRecord.model_validate_json(raw)
        except ValidationError as exc:
            raise UnknownJob(f"the record of job {job_id} is damaged ({exc.error_count()} "
                             "error(s))", hint=f"remove {path}") from None

    async def list(self) -> list[JobRecord]:
        def read_all() -> list[JobRecord]:
            out = []
            with contextlib.suppress(FileNotFoundError):
                for p in sorted(self.directory.glob("*.json")):
                    try:
                        out.append(JobRecord.model_validate_json(p.read_bytes()))
                    except (OSError, ValidationError):
                        _log.warning("damaged job record skipped", ctx={"file": p.name})
            return sorted(out, key=lambda r: (r.created_at, r.job_id))

        return await asyncio.to_thread(read_all)

    async def remove(self, job_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self.path(job_id).unlink)


__all__ = ["JobRecord", "JobRegistry", "JobStatus", "UnknownJob"]
