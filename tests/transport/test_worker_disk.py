"""Worker disks never fill: the received-file cache is capped (LRU eviction that never takes a
file a job uses) and outbox entries nobody came back for expire.

Real files on a real disk; the job tests run real aiortc peers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from rtc_annotator.protocol import peer as proto
from rtc_annotator.storage import StorageConfig
from rtc_annotator.transport.filetransfer import FileCache, TransferRefused
from rtc_annotator.transport.outbox import Outbox
from rtc_annotator.transport.worker_session import Emit, JobServer, ProgressCb
from tests.transport.conftest import Env, RecordingSink, make_file

PIPES = {"scenes": {}}
SIZE = 200_000


def _blob(cache: FileCache, tmp: Path, seed: int, size: int = 1000, age_s: float = 0) -> str:
    data = bytes([seed]) * size
    sha = hashlib.sha256(data).hexdigest()
    part = cache.partial_path(sha)
    part.write_bytes(data)
    cache.commit(sha, part, f"v{seed}.mp4")
    stamp = time.time() - age_s
    os.utime(cache.blobs / sha, (stamp, stamp))
    return sha


def test_cache_evicts_least_recently_used_until_the_new_file_fits(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "c", max_bytes=1 << 30, cap_bytes=3000, min_free_bytes=0)
    a = _blob(cache, tmp_path, 1, age_s=300)
    b = _blob(cache, tmp_path, 2, age_s=200)
    c = _blob(cache, tmp_path, 3, age_s=100)
    assert cache.used_bytes() == 3000
    assert cache.lookup(a) is not None  # a use: a is now the most recently used

    evicted = cache.make_room(1000)

    assert [e.sha256 for e in evicted] == [b]
    assert cache.lookup(b) is None
    assert cache.lookup(a) is not None and cache.lookup(c) is not None
    assert cache.used_bytes() == 2000
    assert cache.make_room(1000) == []  # fits now: nothing more goes


def test_pinned_files_are_never_evicted_and_a_full_cache_refuses(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "c", max_bytes=1 << 30, cap_bytes=2500, min_free_bytes=0)
    a = _blob(cache, tmp_path, 1, age_s=300)
    b = _blob(cache, tmp_path, 2, age_s=200)
    cache.pin(a)
    cache.pin(b)

    with pytest.raises(TransferRefused) as info:
        cache.make_room(1000)
    assert info.value.code == "NO_DISK_SPACE"
    assert "cache_max_bytes" in info.value.hint
    assert cache.lookup(a) is not None and cache.lookup(b) is not None

    cache.unpin(b)
    assert [e.sha256 for e in cache.make_room(1000)] == [b]
    assert cache.lookup(a) is not None


def test_abandoned_partial_uploads_are_evicted_but_the_resumed_one_is_kept(
        tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "c", max_bytes=1 << 30, cap_bytes=3000, min_free_bytes=0)
    old, resumed = "a" * 64, "b" * 64
    cache.partial_path(old).write_bytes(b"x" * 1500)
    os.utime(cache.partial_path(old), (time.time() - 500, time.time() - 500))
    cache.partial_path(resumed).write_bytes(b"y" * 1000)
    os.utime(cache.partial_path(resumed), (time.time() - 900, time.time() - 900))

    # resuming "b" (2000 bytes in all, 1000 held): only 1000 more are needed
    evicted = cache.make_room(2000, keep=resumed)

    assert [e.sha256 for e in evicted] == [old]
    assert cache.partial_path(resumed).exists() and not cache.partial_path(old).exists()


def test_a_file_larger_than_the_cap_is_refused_before_anything_is_evicted(
        tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "c", max_bytes=1 << 30, cap_bytes=2000, min_free_bytes=0)
    a = _blob(cache, tmp_path, 1)
    with pytest.raises(TransferRefused) as info:
        cache.check_accept(5000)
    assert info.value.code == "FILE_TOO_LARGE" and "cache_max_bytes" in info.value.hint
    assert cache.lookup(a) is not None


class HoldingExecutor:
    """Runs like a pipeline; a job whose input has the sha256 in ``hold`` waits for ``release``."""

    def __init__(self) -> None:
        self.hold: str | None = None
        self.release = asyncio.Event()
        self.holding = asyncio.Event()
        self.read: list[str] = []

    async def __call__(self, job: proto.JobRequest, input_path: Path, emit: Emit,
                       progress: ProgressCb) -> dict[str, Any]:
        digest = await asyncio.to_thread(lambda: hashlib.sha256(input_path.read_bytes()).hexdigest())
        await emit([{"artifact_id": f"{job.job_id}-0", "input_hash": digest}])
        if digest == self.hold:
            self.holding.set()
            await self.release.wait()
            # the input is still there after others were evicted around it
            digest2 = await asyncio.to_thread(
                lambda: hashlib.sha256(input_path.read_bytes()).hexdigest())
            assert digest2 == digest
        self.read.append(digest)
        await emit([{"artifact_id": f"{job.job_id}-1", "input_hash": digest}])
        return {"scenes": {"artifacts": 2, "seconds": 0.01}}


async def test_cache_cap_over_real_peers_keeps_the_running_jobs_file(
        env: Env, tmp_path: Path) -> None:
    """Cap of 2.5 files: the third upload evicts the least recently used file that no job
    uses, never the older one a running job reads."""
    files = [make_file(tmp_path / "home" / f"v{i}.mp4", SIZE, seed=i) for i in range(3)]
    shas = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    execu = HoldingExecutor()
    execu.hold = shas[0]
    cache = FileCache(tmp_path / "worker-cache", max_bytes=1 << 30,
                      cap_bytes=int(SIZE * 2.5), min_free_bytes=0)
    server = JobServer(storage=StorageConfig(), executor=execu, cache=cache,
                       outbox=Outbox(tmp_path / "worker-outbox"), job_slots=2)
    link, _ = await env.connect(server)
    sink = RecordingSink()
    session = env.client(link, sink)

    held = asyncio.create_task(session.submit(files[0], pipelines=PIPES, job_id="held"))
    await asyncio.wait_for(execu.holding.wait(), 15)
    second = await session.submit(files[1], pipelines=PIPES, job_id="second")
    third = await session.submit(files[2], pipelines=PIPES, job_id="third")

    assert second.ok and third.ok and third.transfer == "rtc"
    assert cache.lookup(shas[0]) is not None, "the running job's input was evicted"
    assert cache.lookup(shas[1]) is None, "the unused file should have made room"
    assert cache.lookup(shas[2]) is not None
    assert cache.used_bytes() <= cache.cap_bytes  # type: ignore[operator]

    execu.release.set()
    first = await asyncio.wait_for(held, 15)
    assert first.ok and first.envelopes == 2
    assert sorted(sink.ids()) == sorted(f"{j}-{i}" for j in ("held", "second", "third")
                                        for i in (0, 1))
    assert not cache.pinned(shas[0])  # the job ended: its file may go now


async def test_cache_full_of_files_jobs_use_refuses_the_next_job(
        env: Env, tmp_path: Path) -> None:
    files = [make_file(tmp_path / "home" / f"w{i}.mp4", SIZE, seed=10 + i) for i in range(2)]
    sha0 = hashlib.sha256(files[0].read_bytes()).hexdigest()
    execu = HoldingExecutor()
    execu.hold = sha0
    cache = FileCache(tmp_path / "worker-cache", max_bytes=1 << 30,
                      cap_bytes=int(SIZE * 1.5), min_free_bytes=0)
    server = JobServer(storage=StorageConfig(), executor=execu, cache=cache,
                       outbox=Outbox(tmp_path / "worker-outbox"), job_slots=2)
    link, worker = await env.connect(server)
    session = env.client(link, RecordingSink())

    held = asyncio.create_task(session.submit(files[0], pipelines=PIPES, job_id="held"))
    await asyncio.wait_for(execu.holding.wait(), 15)
    received = worker.bulk_received_bytes
    refused = await session.submit(files[1], pipelines=PIPES, job_id="refused")

    assert not refused.ok
    assert refused.error is not None and refused.error.code == "NO_DISK_SPACE"
    assert "cache_max_bytes" in refused.error.hint
    assert worker.bulk_received_bytes == received  # refused before a byte was sent
    execu.release.set()
    assert (await asyncio.wait_for(held, 15)).ok


async def test_outbox_entries_nobody_came_back_for_expire(
        env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A shortened clock: entries older than the expiry go (one log line each); a running
    job's entry stays however old, and its results still all arrive."""
    outbox = Outbox(tmp_path / "worker-outbox")
    for job_id in ("stale-done", "stale-unacked"):
        await outbox.append(job_id, [{"artifact_id": f"{job_id}-a"}])
    await outbox.finish("stale-done", proto.JobDone(job_id="stale-done", last_seq=1,
                                                    transfer="shared"))
    video = make_file(tmp_path / "home" / "live.mp4", SIZE, seed=42)
    execu = HoldingExecutor()
    execu.hold = hashlib.sha256(video.read_bytes()).hexdigest()
    cache = FileCache(tmp_path / "worker-cache", max_bytes=1 << 30, min_free_bytes=0)
    server = JobServer(storage=StorageConfig(), executor=execu, cache=cache, outbox=outbox)
    link, _ = await env.connect(server)
    sink = RecordingSink()
    live = asyncio.create_task(env.client(link, sink).submit(video, pipelines=PIPES,
                                                             job_id="live"))
    await asyncio.wait_for(execu.holding.wait(), 15)

    assert await server.expire_outbox(3600) == []  # nothing is old yet
    caplog.set_level(logging.INFO, logger="rtc_annotator")
    expired = await server.expire_outbox(3600, now=time.time() + 2 * 3600)

    assert sorted(e.job_id for e in expired) == ["stale-done", "stale-unacked"]
    assert {e.job_id: e.batches for e in expired} == {"stale-done": 1, "stale-unacked": 1}
    assert not outbox.has("stale-done") and not outbox.has("stale-unacked")
    assert outbox.has("live")
    lines = [r.getMessage() for r in caplog.records if "outbox entry expired" in r.getMessage()]
    assert len(lines) == 2 and all("stale-" in line for line in lines)

    execu.release.set()
    result = await asyncio.wait_for(live, 15)
    assert result.ok and sorted(sink.ids()) == ["live-0", "live-1"]
