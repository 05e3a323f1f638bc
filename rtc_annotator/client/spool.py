"""A durable spool between the client and its store: nothing is acked that is not on disk.

:class:`Spool` wraps a :class:`~rtc_annotator.store.Store` for the writes a job makes (asset row,
run rows, artifact batches). Each write first tries the store. When the database is *unreachable*
(see :func:`is_unavailable`), the write goes instead into ``[client] spool_dir`` as one JSON file,
written to a temporary name, fsynced, renamed into place and the directory fsynced, and the call
returns normally, so the caller acks the batch: it is durable. A background flusher retries the
spooled files in order, with exponential backoff, and deletes each one after the store took it.
Ingest is idempotent on ``artifact_id`` (and run writes are upserts), so a crash between a
successful flush and the delete only means the file is applied twice, harmlessly.

What is spooled and what is not:

* spooled: :class:`~rtc_annotator.store.StoreError` caused by a lost or refused connection
  (``OSError``, timeouts, asyncpg connection errors, SQLSTATE classes ``08`` connection
  exception, ``57P`` operator intervention (server shutting down, backend terminated), ``53``
  insufficient resources, ``3D000`` database missing, ``55000`` database not accepting
  connections; SQLite "unable to open", "locked", "disk I/O");
* not spooled: :class:`~rtc_annotator.artifacts.schemas.SchemaError` (an invalid envelope: the
  job fails), constraint violations and any other store error: they are raised to the caller.

While files wait in the spool, later writes of this spool go to the spool too, so a run's rows
are applied in the order they were made. A flush pass holds an ``flock`` on ``.lock`` in the
spool directory, so a ``rtc-annotator spool flush`` and a running client never interleave.
A spooled file the store refuses for a non-connection reason is moved to ``rejected/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.logs import get_logger
from rtc_annotator.store import NotFound, Store, StoreError

try:  # POSIX; on Windows a flush pass is only serialised within the process
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

_log = get_logger(__name__)
_counter = itertools.count(1)
SPOOL_VERSION = 1
REJECTED = "rejected"
SpoolEvent = Callable[[str, dict[str, Any]], Awaitable[None] | None]

_UNAVAILABLE_STATES = ("08", "57P", "53")
_UNAVAILABLE_EXACT = {"3D000"}
_SQLITE_TRANSIENT = ("unable to open", "locked", "disk i/o", "readonly database")


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means "the database cannot be reached now" (spool and retry later).

    Walks the cause/context chain (the store raises ``StoreError ... from None``, which keeps the
    driver's exception as ``__context__``).
    """
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    if not isinstance(exc, StoreError):
        return False
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if _unavailable_one(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _unavailable_one(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return True
    if getattr(exc, "connection_invalidated", False):  # sqlalchemy DBAPIError on a disconnect
        return True
    module = type(exc).__module__
    if module.startswith("asyncpg"):
        names = {c.__name__ for c in type(exc).__mro__}
        if names & {"PostgresConnectionError", "InterfaceError", "ConnectionDoesNotExistError",
                    "InternalClientError"}:
            return True
        state = str(getattr(exc, "sqlstate", "") or "")
        if state.startswith(_UNAVAILABLE_STATES) or state in _UNAVAILABLE_EXACT:
            return True
        if state == "55000" and "accepting connections" in str(exc):
            return True
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(t in text for t in _SQLITE_TRANSIENT)
    return False


@dataclass
class SpoolStatus:
    """What waits in a spool directory."""

    directory: Path
    files: int = 0
    """Spooled writes not yet in the store."""
    envelopes: int = 0
    """Artifact envelopes among them."""
    rejected: int = 0
    """Files the store refused for a non-connection reason (in ``rejected/``)."""
    flushed_files: int = 0
    """Files applied to the store by the call that returned this status."""

    def to_dict(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "files": self.files,
                "envelopes": self.envelopes, "rejected": self.rejected,
                "flushed_files": self.flushed_files}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot spool a {type(value).__name__}")


def _write_durable(directory: Path, name: str, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{name}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / name)
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not possible on every platform
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _list(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir()
                      if p.is_file() and p.suffix == ".json" and not p.name.startswith("."))
    except FileNotFoundError:
        return []


def spool_status(directory: Path) -> SpoolStatus:
    """Count what waits in ``directory`` (blocking: reads the files)."""
    status = SpoolStatus(directory)
    for path in _list(directory):
        status.files += 1
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_bytes())
            if data.get("op") == "ingest":
                status.envelopes += len(data.get("envelopes") or [])
    status.rejected = len(_list(directory / REJECTED))
    return status


class _DirLock:
    """Non-blocking exclusive ``flock`` on ``<dir>/.lock`` (a no-op without fcntl)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / ".lock"
        self.fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            if fcntl is not None:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class Spool:
    """Store writes that survive an unreachable database. ``start()`` is implicit; ``close()``."""

    def __init__(self, store: Store, directory: Path, *, retry_min_s: float = 0.2,
                 retry_max_s: float = 5.0, on_event: SpoolEvent | None = None) -> None:
        self.store = store
        self.directory = Path(directory)
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.on_event = on_event
        self.spooled_files = 0
        """Writes this object sent to the spool (a count, for reports)."""
        self.spooled_envelopes = 0
        self._pending = -1  # unknown until the directory was listed
        self._write_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    # ------------------------------------------------------------------ writes

    async def ingest(self, envelopes: Sequence[dict[str, Any]], *, job_id: str = "",
                     seq: int = 0) -> int:
        """Store a batch, or spool it when the database is unreachable. Returns the number of
        new artifacts written to the store now (0 when spooled). SchemaError propagates."""
        if not envelopes:
            return 0
        record = {"op": "ingest", "job_id": job_id, "seq": seq, "envelopes": list(envelopes)}
        return await self._write(record, lambda: self.store.ingest(list(envelopes)))

    async def upsert_asset(self, asset_id: str, filename: str, size_bytes: int) -> None:
        record = {"op": "asset", "asset_id": asset_id, "filename": filename, "size": size_bytes}
        await self._write(record, lambda: self.store.upsert_asset(asset_id, filename, size_bytes))

    async def start_run(self, run_id: str, asset_id: str, pipeline: str, model_profile: str,
                        worker: str, config_hash: str = "") -> None:
        record = {"op": "start_run", "run_id": run_id, "asset_id": asset_id,
                  "pipeline": pipeline, "profile": model_profile, "worker": worker,
                  "config_hash": config_hash}
        await self._write(record, lambda: self.store.start_run(
            run_id, asset_id, pipeline, model_profile, worker, config_hash))

    async def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        record = {"op": "finish_run", "run_id": run_id, "status": status, "error": error}
        await self._write(record, lambda: self.store.finish_run(run_id, status, error))

    async def _write(self, record: dict[str, Any], direct: Callable[[], Awaitable[Any]]) -> int:
        if self._pending < 0:
            self._pending = len(await asyncio.to_thread(_list, self.directory))
        if self._pending == 0:
            try:
                res = await direct()
                return int(res) if isinstance(res, int) else 0
            except StoreError as exc:
                if not is_unavailable(exc):
                    raise
                _log.warning("database unreachable, spooling", ctx={"op": record["op"],
                                                                   "error": exc.message})
            except OSError as exc:
                _log.warning("database unreachable, spooling", ctx={"op": record["op"],
                                                                   "error": str(exc)})
        await self._spool(record)
        return 0

    async def _spool(self, record: dict[str, Any]) -> None:
        record["v"] = SPOOL_VERSION
        data = json.dumps(record, default=_json_default, separators=(",", ":")).encode()
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):08d}-{record['op']}.json"
        async with self._write_lock:
            await asyncio.to_thread(_write_durable, self.directory, name, data)
            self._pending = max(self._pending, 0) + 1
        self.spooled_files += 1
        n = len(record.get("envelopes") or [])
        self.spooled_envelopes += n
        await self._emit("spooled", {"op": record["op"], "envelopes": n, "file": name})
        self._ensure_flusher()
        self._wake.set()

    async def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            res = self.on_event(kind, data)
            if asyncio.iscoroutine(res):
                await res

    # ------------------------------------------------------------------ flushing

    def _ensure_flusher(self) -> None:
        if self._flusher is None and not self._closed:
            self._flusher = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        delay = self.retry_min_s
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            status = await self.flush_once()
            if status is None:  # another flusher holds the directory
                await asyncio.sleep(delay)
                self._wake.set()
            elif status.files:
                await asyncio.sleep(delay)  # database still down (or files appeared meanwhile)
                delay = min(self.retry_max_s, delay * 2)
                self._wake.set()
            else:
                delay = self.retry_min_s

    async def flush_once(self) -> SpoolStatus | None:
        """One pass over the spool in order; stops at the first connection failure.

        Returns what is left, or None when another process is flushing this directory."""
        async with self._flush_lock:
            lock = _DirLock(self.directory)
            if not await asyncio.to_thread(lock.acquire):
                return None
            try:
                return await self._flush_files()
            finally:
                await asyncio.to_thread(lock.release)

    async def _flush_files(self) -> SpoolStatus:
        files = await asyncio.to_thread(_list, self.directory)
        flushed = 0
        left = list(files)
        for path in files:
            try:
                record = json.loads(await asyncio.to_thread(path.read_bytes))
            except FileNotFoundError:
                left.remove(path)
                continue
            except (OSError, ValueError) as exc:
                await self._reject(path, f"unreadable spool file ({exc})")
                left.remove(path)
                continue
            try:
                await self._apply(record)
            except NotFound:
                _log.warning("spooled run update for an unknown run dropped",
                             ctx={"file": path.name})
            except (StoreError, OSError) as exc:
                if is_unavailable(exc):
                    _log.info("database still unreachable", ctx={"left": len(left)})
                    break
                await self._reject(path, str(exc))
                left.remove(path)
                continue
            except RtcAnnotatorError as exc:  # SchemaError and friends: never retried
                await self._reject(path, f"{exc.code}: {exc.message}")
                left.remove(path)
                continue
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(path.unlink)
            left.remove(path)
            flushed += 1
        self._pending = len(left)
        if flushed:
            _log.info("spool flushed", ctx={"files": flushed, "left": len(left)})
            await self._emit("flushed", {"files": flushed, "left": len(left)})
        status = await asyncio.to_thread(spool_status, self.directory)
        status.flushed_files = flushed
        return status

    async def _apply(self, r: dict[str, Any]) -> None:
        op = r.get("op")
        if op == "ingest":
            await self.store.ingest(r["envelopes"])
        elif op == "asset":
            await self.store.upsert_asset(r["asset_id"], r["filename"], int(r["size"]))
        elif op == "start_run":
            await self.store.start_run(r["run_id"], r["asset_id"], r["pipeline"], r["profile"],
                                       r["worker"], r.get("config_hash", ""))
        elif op == "finish_run":
            await self.store.finish_run(r["run_id"], r["status"], r.get("error"))
        else:
            raise RtcAnnotatorError(f"unknown spool operation {op!r}", code="SPOOL_ERROR")

    async def _reject(self, path: Path, reason: str) -> None:
        _log.warning("spooled write refused, moved aside", ctx={"file": path.name,
                                                                "reason": reason[:200]})

        def move() -> None:
            target = self.directory / REJECTED
            target.mkdir(parents=True, exist_ok=True)
            os.replace(path, target / path.name)
            (target / (path.name + ".reason")).write_text(reason + "\n")

        with contextlib.suppress(OSError):
            await asyncio.to_thread(move)

    async def flush(self, wait_s: float = 0.0) -> SpoolStatus:
        """Flush now; while files remain and ``wait_s`` has not passed, retry with backoff."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        delay = self.retry_min_s
        while True:
            status = await self.flush_once()
            if status is not None and status.files == 0:
                return status
            if loop.time() + delay > deadline:
                if status is None:
                    status = await asyncio.to_thread(spool_status, self.directory)
                return status
            await asyncio.sleep(delay)
            delay = min(self.retry_max_s, delay * 2)

    async def status(self) -> SpoolStatus:
        return await asyncio.to_thread(spool_status, self.directory)

    async def close(self) -> None:
        """Stop the background flusher (files stay on disk for the next flush)."""
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None


__all__ = ["Spool", "SpoolStatus", "is_unavailable", "spool_status"]
