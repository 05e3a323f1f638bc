"""Verified, resumable file transfer over a :class:`~rtc_annotator.transport.peer.PeerLink`.

Sender (:func:`send_file`): ``TRANSFER_OFFER`` -> the receiver's ``TRANSFER_STATUS`` says how many
verified bytes it holds (or that it has the whole file) -> chunks from that offset, read from disk
1 MiB at a time in a thread, each framed with its offset and CRC32 -> ``TRANSFER_DONE`` -> final
``TRANSFER_STATUS`` (complete, or an error). The bulk channel's ``bufferedamountlow`` event paces
the sender; the file is never held in memory.

Receiver (:class:`FileCache` + :class:`FileReceiver`): chunks must arrive at the expected offset
with a matching CRC32; good ones are appended to ``partial/<sha256>.part`` and hashed (sha256) in a
writer thread. A bad CRC makes the receiver ask for a resend from its verified offset. On
``TRANSFER_DONE`` the sha256 of the whole file is compared; a match moves the file to
``blobs/<sha256>/<sanitised name>`` (content-addressed: a later offer of the same sha256 is
answered ``complete`` at once), a mismatch deletes it and reports ``TRANSFER_CORRUPT``.
After a drop the partial file stays; the next offer of the same sha256 resumes from its size.

The cache has a size cap (``cap_bytes``, ``[worker] cache_max_bytes``): before a transfer is
accepted, the least recently used files are evicted until the new file fits. Files that a job
uses (its input, or the partial file it waits for) are pinned and never evicted; when pinned
files alone leave no room the transfer is refused with ``NO_DISK_SPACE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import shutil
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rtc_annotator.errors import ErrorEnvelope, RtcAnnotatorError
from rtc_annotator.logs import get_logger
from rtc_annotator.protocol import peer as proto
from rtc_annotator.protocol.peer import TransferMachine, TransferState
from rtc_annotator.transport.peer import LinkClosed, PeerLink

CHUNK_BYTES = 64 * 1024
"""Payload bytes per bulk frame."""
READ_BYTES = 1024 * 1024
"""Bytes read from (or written to) disk per thread hop."""
MAX_RESTARTS = 5
"""Resend requests one transfer may make before it is failed."""

_log = get_logger(__name__)
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")

ProgressFn = Callable[[int, int], Awaitable[None] | None]
"""``progress(done_bytes, total_bytes)``; may be sync or async."""
ChunkHook = Callable[[int, bytes], bytes]
"""Fault-injection hook: ``(offset, frame) -> frame`` applied to each framed chunk before it is
queued (tests corrupt frames in flight with it)."""


class TransferError(RtcAnnotatorError):
    """A file transfer failed."""

    code = "TRANSFER_FAILED"


class TransferCorrupt(TransferError):
    """The received file's sha256 does not match the offer."""

    code = "TRANSFER_CORRUPT"
    default_hint = "the file changed while it was sent, or was corrupted in flight; send it again"


class TransferRefused(TransferError):
    """The receiver will not take the file (size limit, disk space)."""

    code = "TRANSFER_REFUSED"


def sanitize_name(name: str, *, limit: int = 120) -> str:
    """A file name safe on every filesystem: no separators, controls, dots-only or reserved
    characters; keeps the extension; never empty."""
    base = unicodedata.normalize("NFKC", name).replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[\x00-\x1f\x7f-\x9f<>:\"|?*]", "_", base).strip(" .")
    if not base:
        base = "input"
    if len(base.encode()) > limit:
        stem, dot, ext = base.rpartition(".")
        ext = ext[:16].strip(" .") if dot else ""  # counted in bytes below, not characters
        room = limit - len(ext.encode()) - 1 if ext else limit
        stem = (stem if dot else base).encode()[:room].decode("utf-8", "ignore").strip(" .")
        base = f"{stem or 'input'}.{ext}" if ext else (stem or "input")
    return base


def sha256_file(path: Path, *, block: int = READ_BYTES) -> str:
    """sha256 of a file, streamed. Blocking: call from a thread."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- receiver side


@dataclass(frozen=True)
class CacheEntry:
    """One file of the cache, for eviction: a verified blob or a partial upload."""

    sha256: str
    """Content hash (the key)."""
    path: Path
    """The blob's folder or the partial file."""
    size: int
    """Bytes on disk."""
    last_used: float
    """Modification time of the entry, refreshed on every use (seconds since the epoch)."""
    partial: bool
    """True for an unfinished upload."""


class FileCache:
    """Worker-side content-addressed cache of received files, capped in total size (LRU)."""

    def __init__(self, root: Path, *, max_bytes: int, cap_bytes: int | None = None,
                 min_free_bytes: int = 64 * 1024**2) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.cap_bytes = cap_bytes
        """Total bytes the cache may hold (blobs and partial files); None: no cap."""
        self.min_free_bytes = min_free_bytes
        self._pins: dict[str, int] = {}
        self.blobs = self.root / "blobs"
        self.partial = self.root / "partial"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, asyncio.Lock] = {}
        self._arrived: dict[str, asyncio.Event] = {}

    @staticmethod
    def _check_sha(sha256: str) -> str:
        if not _SHA_RE.match(sha256):
            raise TransferError(f"invalid sha256 {sha256[:80]!r}")
        return sha256

    def lookup(self, sha256: str) -> Path | None:
        """The cached file with this sha256, if any (and mark it used, for eviction)."""
        folder = self.blobs / self._check_sha(sha256)
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.is_file():
                    with contextlib.suppress(OSError):
                        os.utime(folder)
                    return entry
        return None

    # ------------------------------------------------------------------ pins and eviction

    def pin(self, sha256: str) -> None:
        """A job uses this file (or waits for it): never evict it until :meth:`unpin`."""
        self._pins[sha256] = self._pins.get(sha256, 0) + 1

    def unpin(self, sha256: str) -> None:
        left = self._pins.get(sha256, 0) - 1
        if left > 0:
            self._pins[sha256] = left
        else:
            self._pins.pop(sha256, None)

    def pinned(self, sha256: str) -> bool:
        return self._pins.get(sha256, 0) > 0

    def entries(self) -> list[CacheEntry]:
        """Every blob and partial file with its size and last use. Blocking: scans the disk."""
        return cache_entries(self.root)

    def used_bytes(self) -> int:
        """Bytes the cache holds now. Blocking."""
        return sum(e.size for e in self.entries())

    def make_room(self, incoming: int, *, keep: str | None = None) -> list[CacheEntry]:
        """Evict least recently used, unpinned entries until ``incoming`` more bytes fit under
        the cap; return what was evicted. ``keep`` (the sha256 being received) is never evicted.
        Raises :class:`TransferRefused` (``NO_DISK_SPACE``) when pinned files leave no room.
        Blocking: call from a thread."""
        if self.cap_bytes is None:
            return []
        entries = self.entries()
        used = sum(e.size for e in entries)
        # the partial file being resumed already counts in ``used``; only the rest is new
        incoming -= sum(e.size for e in entries if e.sha256 == keep and e.partial)
        evicted: list[CacheEntry] = []
        for entry in sorted(entries, key=lambda e: (e.last_used, e.sha256)):
            if used + incoming <= self.cap_bytes:
                break
            if entry.sha256 == keep or self.pinned(entry.sha256):
                continue
            if entry.partial:
                entry.path.unlink(missing_ok=True)
            else:
                shutil.rmtree(entry.path, ignore_errors=True)
            used -= entry.size
            evicted.append(entry)
            _log.info("cache entry evicted", ctx={"sha256": entry.sha256[:12], "bytes": entry.size,
                                                  "partial": entry.partial,
                                                  "idle_s": round(time.time() - entry.last_used)})
        if used + incoming > self.cap_bytes:
            raise TransferRefused(
                f"the worker's file cache is full: {used} of {self.cap_bytes} bytes are held by "
                f"files that running jobs use, and {incoming} more are needed",
                hint="wait for running jobs to finish, raise [worker] cache_max_bytes, "
                     "or use shared storage",
                code="NO_DISK_SPACE",
            )
        return evicted

    async def reserve(self, incoming: int, *, keep: str | None = None) -> list[CacheEntry]:
        """:meth:`make_room` off the event loop."""
        if self.cap_bytes is None:
            return []
        return await asyncio.to_thread(self.make_room, incoming, keep=keep)

    def partial_path(self, sha256: str) -> Path:
        return self.partial / f"{self._check_sha(sha256)}.part"

    def lock(self, sha256: str) -> asyncio.Lock:
        return self._locks.setdefault(sha256, asyncio.Lock())

    def arrived(self, sha256: str) -> asyncio.Event:
        """Set once the verified file is in the cache."""
        event = self._arrived.setdefault(sha256, asyncio.Event())
        if not event.is_set() and self.lookup(sha256) is not None:
            event.set()
        return event

    def check_accept(self, size: int, have: int = 0) -> None:
        """Raise :class:`TransferRefused` when the file is too big or the disk too full."""
        if size > self.max_bytes:
            raise TransferRefused(
                f"file of {size} bytes exceeds this worker's limit of {self.max_bytes} bytes",
                hint="raise [worker] max_upload_bytes on the worker, or use shared storage",
                code="FILE_TOO_LARGE",
            )
        if self.cap_bytes is not None and size > self.cap_bytes:
            raise TransferRefused(
                f"file of {size} bytes exceeds this worker's cache cap of {self.cap_bytes} bytes",
                hint="raise [worker] cache_max_bytes on the worker, or use shared storage",
                code="FILE_TOO_LARGE",
            )
        free = shutil.disk_usage(self.root).free
        if free - (size - have) < self.min_free_bytes:
            raise TransferRefused(
                f"not enough disk space for {size - have} bytes ({free} free)",
                hint="free space in the worker's cache_dir, or use shared storage",
                code="NO_DISK_SPACE",
            )

    def commit(self, sha256: str, part: Path, name: str) -> Path:
        """Move a verified partial file into place. Blocking (small): rename only."""
        folder = self.blobs / sha256
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / sanitize_name(name)
        os.replace(part, target)
        os.utime(folder)
        self.arrived(sha256).set()
        return target


def cache_entries(root: Path) -> list[CacheEntry]:
    """Every blob and partial file under a cache ``root`` (``blobs/``, ``partial/``), with its
    size and last use; creates nothing. Blocking: scans the disk."""
    out: list[CacheEntry] = []
    for folder in _listdir(root / "blobs"):
        if not _SHA_RE.match(folder.name) or not folder.is_dir():
            continue
        size = sum(f.stat().st_size for f in _listdir(folder) if f.is_file())
        with contextlib.suppress(OSError):
            out.append(CacheEntry(folder.name, folder, size, folder.stat().st_mtime, False))
    for part in _listdir(root / "partial"):
        sha = part.name.removesuffix(".part")
        if _SHA_RE.match(sha) and part.is_file():
            with contextlib.suppress(OSError):
                st = part.stat()
                out.append(CacheEntry(sha, part, st.st_size, st.st_mtime, True))
    return out


def _listdir(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


@dataclass
class ReceiveResult:
    sha256: str
    path: Path | None
    received_bytes: int


class FileReceiver:
    """Receives one offered file on one link (the worker creates one per TRANSFER_OFFER)."""

    def __init__(self, cache: FileCache, link: PeerLink, offer: proto.TransferOffer, *,
                 progress: ProgressFn | None = None) -> None:
        self.cache = cache
        self.link = link
        self.offer = offer
        self.progress = progress
        self.expected = 0
        self.received_bytes = 0
        self.restarts = 0
        self.done = asyncio.Event()
        self.result: ReceiveResult | None = None
        self._waiting_restart = False
        self._hasher = hashlib.sha256()
        self._fh: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._written = 0
        self._write_error: TransferError | None = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._verifying: asyncio.Task[None] | None = None
        self._lock = cache.lock(offer.sha256)
        self._held = False
        self._log = get_logger(__name__, sha256=offer.sha256[:12], job=offer.job_id,
                               transfer=offer.transfer_no)

    async def _status(self, have: int, *, complete: bool = False,
                      error: ErrorEnvelope | None = None) -> None:
        with contextlib.suppress(LinkClosed):
            await self.link.send(proto.TransferStatus(
                transfer_no=self.offer.transfer_no, sha256=self.offer.sha256, have_bytes=have,
                complete=complete, error=error))

    async def start(self) -> None:
        """Answer the offer: complete (cached), refused, or 'send from N'."""
        offer = self.offer
        if self.cache.lookup(offer.sha256) is not None:
            self._finish(ReceiveResult(offer.sha256, self.cache.lookup(offer.sha256), 0))
            await self._status(offer.size, complete=True)
            return
        try:
            # An earlier link may still hold the partial file; it lets go when it closes.
            async with asyncio.timeout(self.link.options.dead_after_s + 5):
                await self._lock.acquire()
            self._held = True
            if self.done.is_set():  # aborted (link gone, offer replaced) while it waited
                self._finish(self.result or ReceiveResult(offer.sha256, None, 0))
                return
            cached = self.cache.lookup(offer.sha256)
            if cached is not None:  # another transfer of the same bytes finished meanwhile
                self._finish(ReceiveResult(offer.sha256, cached, 0))
                await self._status(offer.size, complete=True)
                return
            cap = self.cache.cap_bytes
            if offer.size > self.cache.max_bytes or (cap is not None and offer.size > cap):
                self.cache.check_accept(offer.size)  # refuse before any partial file exists
            await self.cache.reserve(offer.size, keep=offer.sha256)
            part = self.cache.partial_path(offer.sha256)
            have = await asyncio.to_thread(self._open_partial, part)
            if self.done.is_set():  # aborted while the file was being opened
                await asyncio.to_thread(self._close_file, False)
                self._finish(self.result or ReceiveResult(offer.sha256, None, 0))
                return
            self.cache.check_accept(offer.size, have)
        except (TransferError, OSError, TimeoutError) as exc:
            err = exc if isinstance(exc, TransferError) else TransferError(
                f"cannot receive file ({type(exc).__name__})")
            await self._fail(err)
            return
        self.expected = have
        self._writer = asyncio.create_task(self._write_loop())
        self._log.info("receiving", ctx={"from": have, "size": offer.size})
        await self._status(have)

    def _open_partial(self, part: Path) -> int:
        self._fh = open(part, "ab+")  # noqa: SIM115 - closed in _close_file
        self._fh.seek(0)
        have = 0
        while block := self._fh.read(READ_BYTES):
            self._hasher.update(block)
            have += len(block)
        if have > self.offer.size:
            self._fh.truncate(0)
            self._hasher = hashlib.sha256()
            have = 0
        return have

    def on_chunk(self, offset: int, payload: memoryview, crc_ok: bool) -> None:
        """Called by the link's bulk handler for frames of this transfer."""
        if self._writer is None or self.done.is_set() or self._verifying is not None:
            return
        if offset != self.expected:
            return  # stale frame sent before a restart; ignore
        if not crc_ok or offset + len(payload) > self.offer.size:
            if self._waiting_restart:
                return
            self.restarts += 1
            self._log.warning("corrupt chunk, asking for resend", ctx={"offset": offset})
            if self.restarts > MAX_RESTARTS:
                asyncio.get_running_loop().create_task(self._fail(TransferCorrupt(
                    f"too many corrupt chunks ({self.restarts})",
                    hint="the link corrupts data; check the network path")))
                return
            self._waiting_restart = True
            asyncio.get_running_loop().create_task(self._status(self.expected))
            return
        self._waiting_restart = False
        data = bytes(payload)
        self.expected += len(data)
        self.received_bytes += len(data)
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= READ_BYTES:
            self._flush_pending()
        if self.expected == self.offer.size:
            self._verifying = asyncio.get_running_loop().create_task(self._verify())

    def _flush_pending(self) -> None:
        if self._pending:
            self._queue.put_nowait(b"".join(self._pending))
            self._pending.clear()
            self._pending_bytes = 0

    async def _write_loop(self) -> None:
        while True:
            block = await self._queue.get()
            if block is None:
                return
            try:
                await asyncio.to_thread(self._write, block)
            except OSError as exc:
                # Disk full (or another write error): fail the transfer from another task (this
                # one must end first, _fail waits for it) and drop the partial file.
                self._write_error = self._disk_error(exc)
                asyncio.get_running_loop().create_task(
                    self._fail(self._write_error, remove_partial=True))
                return
            if self.progress is not None:
                res = self.progress(self.expected, self.offer.size)
                if asyncio.iscoroutine(res):
                    await res

    def _write(self, block: bytes) -> None:
        assert self._fh is not None
        self._fh.write(block)
        self._hasher.update(block)
        self._written += len(block)

    def _disk_error(self, exc: OSError) -> TransferError:
        """A clear error for a failed write of the received file (ENOSPC above all)."""
        where = f"{self._written} of {self.offer.size} bytes written"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return TransferRefused(
                f"the worker's disk is full: cannot store {self.offer.name!r} ({where})",
                hint="free space in the worker's cache_dir, or use shared storage",
                code="NO_DISK_SPACE",
            )
        return TransferError(
            f"the worker cannot write {self.offer.name!r} ({exc.strerror}; {where})",
            hint="check the worker's cache_dir (permissions, disk health)",
        )

    async def _drain(self) -> None:
        self._flush_pending()
        self._queue.put_nowait(None)
        if self._writer is not None:
            await self._writer
            self._writer = None

    async def finish(self, done: proto.TransferDone) -> None:
        """Sender queued the last chunk. Chunks travel on another channel than this message and
        may still be in flight, so verification starts when the last byte arrives."""
        self._log.debug("sender done", ctx={"sent": done.sent_bytes, "have": self.expected})

    async def _verify(self) -> None:
        """All bytes are here: compare the sha256 and commit, or report corruption."""
        await self._drain()
        if self._write_error is not None or self.done.is_set():
            return  # a failed write already failed the transfer
        try:
            await asyncio.to_thread(self._close_file, True)
        except OSError as exc:  # the last flush / fsync hit a full disk
            await self._fail(self._disk_error(exc), remove_partial=True)
            return
        digest = self._hasher.hexdigest()
        part = self.cache.partial_path(self.offer.sha256)
        if digest != self.offer.sha256:
            await asyncio.to_thread(part.unlink, True)
            await self._fail(TransferCorrupt(
                f"received file's sha256 {digest[:12]} does not match the offer "
                f"{self.offer.sha256[:12]}"))
            return
        path = self.cache.commit(self.offer.sha256, part, self.offer.name)
        self._log.info("file verified", ctx={"bytes": self.offer.size})
        self._finish(ReceiveResult(self.offer.sha256, path, self.received_bytes))
        await self._status(self.offer.size, complete=True)

    def _close_file(self, sync: bool) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        finally:
            fh.close()  # closes the descriptor even when the flush failed (and raises again)

    async def abort(self) -> None:
        """Link gone: keep the verified bytes on disk for a resume, let go of the file."""
        if self.done.is_set():
            return
        with contextlib.suppress(Exception):
            await self._drain()
        if self.done.is_set():  # a failed write ended it meanwhile
            return
        try:
            await asyncio.to_thread(self._close_file, False)
        except OSError as exc:
            await self._fail(self._disk_error(exc), remove_partial=True)
            return
        self._log.info("transfer interrupted", ctx={"have": self.expected})
        self._finish(ReceiveResult(self.offer.sha256, None, self.received_bytes))

    async def _fail(self, exc: TransferError, *, remove_partial: bool = False) -> None:
        """End the transfer with ``exc``; ``remove_partial`` also deletes the partial file
        (after a failed write its content cannot be trusted to resume from)."""
        if self.done.is_set():
            return
        self._log.warning("transfer failed", ctx={"code": exc.code, "error": exc.message})
        if self._writer is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await self._writer
            self._writer = None
        with contextlib.suppress(OSError):  # flushing onto a full disk fails again
            await asyncio.to_thread(self._close_file, False)
        if remove_partial:
            part = self.cache.partial_path(self.offer.sha256)
            await asyncio.to_thread(part.unlink, True)
            self._log.info("partial file removed", ctx={"path": part.name})
        self.error = exc
        self._finish(ReceiveResult(self.offer.sha256, None, self.received_bytes))
        await self._status(self.expected, error=exc.envelope())

    def _finish(self, result: ReceiveResult) -> None:
        self.result = result
        self.done.set()
        if self._held:
            self._held = False
            self._lock.release()

    error: TransferError | None = None


# --------------------------------------------------------------------------- sender side


@dataclass
class SendResult:
    sha256: str
    sent_bytes: int
    """File bytes sent on this call (0 when the receiver already had the file)."""
    resumed_from: int
    """Verified bytes the receiver held when this call started."""


async def send_file(link: PeerLink, path: Path, *, job_id: str, sha256: str, transfer_no: int,
                    statuses: asyncio.Queue[proto.TransferStatus],
                    progress: ProgressFn | None = None, chunk_hook: ChunkHook | None = None,
                    chunk_bytes: int = CHUNK_BYTES) -> SendResult:
    """Send ``path`` to the peer; returns when the receiver verified it.

    ``statuses`` receives this transfer's TRANSFER_STATUS messages (the caller's reader routes
    them by ``transfer_no``). Raises :class:`LinkClosed` when the link drops (call again on a new
    link to resume), :class:`TransferError` when the receiver refuses or the file is corrupt.
    """
    size = await asyncio.to_thread(os.path.getsize, path)
    machine = TransferMachine(sha256)
    log = get_logger(__name__, sha256=sha256[:12], job=job_id, transfer=transfer_no)
    await link.send(proto.TransferOffer(transfer_no=transfer_no, job_id=job_id, name=path.name,
                                        size=size, sha256=sha256))
    first = await _next_status(link, statuses)
    if first.error is not None:
        machine.state = TransferState.FAILED
        raise _error_from(first.error)
    if first.complete:
        machine.state = TransferState.COMPLETE
        log.info("receiver already holds the file; nothing sent")
        return SendResult(sha256, 0, size)
    resumed_from = offset = first.have_bytes
    sent = 0
    machine.state = TransferState.SENDING
    if resumed_from:
        log.info("resuming transfer", ctx={"from": resumed_from, "size": size})
    fh = await asyncio.to_thread(open, path, "rb")
    try:
        while True:
            await asyncio.to_thread(fh.seek, offset)
            restart: int | None = None
            while offset < size and restart is None:
                block = await asyncio.to_thread(fh.read, READ_BYTES)
                if not block:
                    raise TransferError(f"{path.name} shrank while it was sent",
                                        hint="do not modify a file while it is submitted")
                view = memoryview(block)
                for start in range(0, len(block), chunk_bytes):
                    payload = bytes(view[start : start + chunk_bytes])
                    frame = proto.pack_chunk(transfer_no, offset, payload)
                    if chunk_hook is not None:
                        frame = chunk_hook(offset, frame)
                    await link.send_bulk(frame)
                    offset += len(payload)
                    sent += len(payload)
                    if not statuses.empty():
                        restart = _check_restart(statuses.get_nowait(), machine)
                        if restart is not None:
                            break
                if progress is not None:
                    res = progress(offset, size)
                    if asyncio.iscoroutine(res):
                        await res
            if restart is None:
                machine.state = TransferState.VERIFYING
                await link.send(proto.TransferDone(transfer_no=transfer_no, sent_bytes=sent))
                status = await _next_status(link, statuses)
                if status.complete:
                    machine.state = TransferState.COMPLETE
                    log.info("transfer verified", ctx={"sent": sent, "size": size})
                    return SendResult(sha256, sent, resumed_from)
                restart = _check_restart(status, machine)
            log.info("receiver asked for a resend", ctx={"from": restart})
            machine.state = TransferState.SENDING
            offset = restart if restart is not None else offset
    except LinkClosed:
        machine.state = TransferState.INTERRUPTED
        raise
    finally:
        await asyncio.to_thread(fh.close)


def _check_restart(status: proto.TransferStatus, machine: TransferMachine) -> int | None:
    if status.error is not None:
        machine.state = TransferState.FAILED
        raise _error_from(status.error)
    if status.complete:
        return None
    return status.have_bytes


async def _next_status(link: PeerLink,
                       statuses: asyncio.Queue[proto.TransferStatus]) -> proto.TransferStatus:
    getter = asyncio.ensure_future(statuses.get())
    closer = asyncio.ensure_future(link.closed.wait())
    try:
        await asyncio.wait({getter, closer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closer.cancel()
    if getter.done():
        return getter.result()
    getter.cancel()
    raise LinkClosed(f"link closed during transfer ({link.close_reason})")


def _error_from(env: ErrorEnvelope) -> TransferError:
    cls: type[TransferError] = TransferRefused
    if env.code == "TRANSFER_CORRUPT":
        cls = TransferCorrupt
    elif env.code == "TRANSFER_FAILED":
        cls = TransferError
    return cls(env.message, hint=env.hint, code=env.code)
