"""Worker-side on-disk outbox of artifact batches: written before sending, deleted on ack.

Layout under ``root`` (one folder per job; job ids are checked by the protocol models to be
plain names)::

    <job_id>/000000000001.batch   msgpack ARTIFACT_BATCH, one file per unacked batch
    <job_id>/acked                highest acked sequence number (text)
    <job_id>/final                msgpack JOB_DONE / JOB_FAILED once the job ended

Files are written to a temporary name, fsynced and renamed, so a crash never leaves half a
batch. A worker restarted on the same ``root`` replays what a reattaching client has not acked.
All file work runs in threads.

Expiry: a job folder nobody reattached to is removed once its newest file is older than
``[worker] outbox_expire_days`` (default 7), unless the job still runs (:meth:`Outbox.expire`,
called by the worker at start and periodically; one log line per expired job).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from rtc_annotator.errors import ProtocolError
from rtc_annotator.logs import get_logger
from rtc_annotator.protocol import peer as proto

_log = get_logger(__name__)

_JOB_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_BATCH_RE = re.compile(r"^(\d{12})\.batch$")


def _check_job(job_id: str) -> str:
    if not _JOB_RE.match(job_id):
        raise ProtocolError(f"invalid job id {job_id[:80]!r}",
                            hint="job ids are 1-64 letters, digits, '_', '.', '-'")
    return job_id


def _atomic_write(path: Path, data: bytes) -> None:
    # a name of its own: two acks of one job may write "acked" at once from two threads
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(6)}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class OutboxEntry:
    """One job's folder in the outbox."""

    job_id: str
    """The job."""
    batches: int
    """Unacked batches waiting for the client."""
    finished: bool
    """The job ended (its JOB_DONE / JOB_FAILED is recorded)."""
    last_change: float
    """Newest modification time in the folder (seconds since the epoch)."""


class Outbox:
    """Durable per-job queue of unacked batches."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._next: dict[str, int] = {}

    def _dir(self, job_id: str) -> Path:
        return self.root / _check_job(job_id)

    def _scan(self, job_id: str) -> tuple[list[int], int]:
        folder = self._dir(job_id)
        seqs: list[int] = []
        acked = 0
        if folder.is_dir():
            for entry in folder.iterdir():
                m = _BATCH_RE.match(entry.name)
                if m:
                    seqs.append(int(m.group(1)))
            ack_file = folder / "acked"
            if ack_file.is_file():
                acked = int(ack_file.read_text().strip() or 0)
        return sorted(seqs), acked

    def _last_seq(self, job_id: str) -> int:
        seqs, acked = self._scan(job_id)
        return max([acked, *seqs])

    async def append(self, job_id: str, envelopes: list[dict[str, object]]) -> proto.ArtifactBatch:
        """Number the batch, write it durably, return it (ready to send)."""
        if job_id not in self._next:
            self._next[job_id] = await asyncio.to_thread(self._last_seq, job_id) + 1
        seq = self._next[job_id]
        batch = proto.ArtifactBatch(job_id=job_id, seq=seq, envelopes=envelopes)
        folder = self._dir(job_id)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(_atomic_write, folder / f"{seq:012d}.batch", proto.encode(batch))
        self._next[job_id] = seq + 1
        return batch

    def last_seq(self, job_id: str) -> int:
        return self._next.get(job_id, 1) - 1 if job_id in self._next else self._last_seq(job_id)

    async def ack(self, job_id: str, seq: int) -> int:
        """Delete batches up to ``seq``; returns how many were deleted."""
        return await asyncio.to_thread(self._ack, job_id, seq)

    def _ack(self, job_id: str, seq: int) -> int:
        folder = self._dir(job_id)
        if not folder.is_dir():
            return 0
        seqs, acked = self._scan(job_id)
        if seq > acked:
            _atomic_write(folder / "acked", str(seq).encode())
        removed = 0
        for s in seqs:
            if s <= seq:
                (folder / f"{s:012d}.batch").unlink(missing_ok=True)
                removed += 1
        return removed

    async def pending(self, job_id: str, after_seq: int) -> list[proto.ArtifactBatch]:
        """Unacked batches with ``seq > after_seq``, in order."""
        return await asyncio.to_thread(self._pending, job_id, after_seq)

    def _pending(self, job_id: str, after_seq: int) -> list[proto.ArtifactBatch]:
        folder = self._dir(job_id)
        out = []
        for s in self._scan(job_id)[0]:
            if s > after_seq:
                msg = proto.decode((folder / f"{s:012d}.batch").read_bytes(),
                                   max_size=1 << 30)
                assert isinstance(msg, proto.ArtifactBatch)
                out.append(msg)
        return out

    async def finish(self, job_id: str, final: proto.JobDone | proto.JobFailed) -> None:
        folder = self._dir(job_id)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(_atomic_write, folder / "final", proto.encode(final))

    async def final(self, job_id: str) -> proto.JobDone | proto.JobFailed | None:
        path = self._dir(job_id) / "final"

        def read() -> proto.JobDone | proto.JobFailed | None:
            if not path.is_file():
                return None
            msg = proto.decode(path.read_bytes())
            assert isinstance(msg, proto.JobDone | proto.JobFailed)
            return msg

        return await asyncio.to_thread(read)

    async def set_owner(self, job_id: str, owner: str) -> None:
        """Record which client identity submitted the job (checked on ATTACH after a restart)."""
        folder = self._dir(job_id)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(_atomic_write, folder / "owner", owner.encode())

    async def owner(self, job_id: str) -> str | None:
        path = self._dir(job_id) / "owner"

        def read() -> str | None:
            try:
                return path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                return None

        return await asyncio.to_thread(read)

    def has(self, job_id: str) -> bool:
        return self._dir(job_id).is_dir()

    async def drop(self, job_id: str) -> None:
        """The client acked the final message: forget the job."""
        self._next.pop(job_id, None)
        await asyncio.to_thread(shutil.rmtree, self._dir(job_id), True)

    # ------------------------------------------------------------------ expiry

    def entries(self) -> list[OutboxEntry]:
        """Every job folder with its unacked batches and age. Blocking: scans the disk."""
        return outbox_entries(self.root)

    def expire(self, max_age_s: float, *, active: Collection[str] = (),
               now: float | None = None) -> list[OutboxEntry]:
        """Remove the folders of jobs untouched for ``max_age_s`` that are not in ``active``
        (jobs still running); log and return them. Blocking: call from a thread."""
        now = time.time() if now is None else now
        expired = []
        for entry in self.entries():
            age = now - entry.last_change
            if entry.job_id in active or age <= max_age_s:
                continue
            shutil.rmtree(self.root / entry.job_id, ignore_errors=True)
            self._next.pop(entry.job_id, None)
            expired.append(entry)
            _log.warning("outbox entry expired: no client reattached",
                         ctx={"job": entry.job_id, "batches": entry.batches,
                              "finished": entry.finished, "age_h": round(age / 3600, 1)})
        return expired


def outbox_entries(root: Path) -> list[OutboxEntry]:
    """Every job folder under an outbox ``root`` with its unacked batches and age; creates
    nothing. Blocking: scans the disk."""
    out = []
    try:
        folders = [f for f in root.iterdir() if f.is_dir() and _JOB_RE.match(f.name)]
    except OSError:
        return []
    for folder in folders:
        try:
            files = list(folder.iterdir())
            newest = max([folder.stat().st_mtime, *(f.stat().st_mtime for f in files)])
        except OSError:
            continue
        out.append(OutboxEntry(
            job_id=folder.name,
            batches=sum(1 for f in files if _BATCH_RE.match(f.name)),
            finished=any(f.name == "final" for f in files),
            last_change=newest,
        ))
    return out
