"""A worker's disk fills up while it receives a video: a real ENOSPC, not a simulated one.

The worker's file cache (``<cache_dir>/files``) is a 72 MiB tmpfs mounted for the test, so the
admission check (64 MiB must stay free) lets the 5 MB video in. Once the worker has written its
first MiB, the test fills the tmpfs up to the last 64 KiB (another process eating the disk), so
the worker's next write fails with ENOSPC. Expected: the job ends with ``JOB_FAILED`` code
``NO_DISK_SPACE`` and a message that says so, the partial file is gone, and after the space is
freed the same worker takes the same video and completes the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.store import Store
from rtc_annotator.transport.client_session import ClientSession, file_sha256

from .conftest import MakeSettings, StartAgent, connect_to, fast_link, stop_agent, store_contents

PIPELINES: dict[str, dict[str, Any]] = {"metadata": {}, "scenes": {}}
MiB = 1024 * 1024


def _mount_tmpfs(path: Path, size: str) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs (a real full disk)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


def _fill(disk: Path, leave: int) -> Path:
    """Allocate a file that leaves only ``leave`` bytes free on ``disk``."""
    filler = disk / "filler.bin"
    free = shutil.disk_usage(disk).free
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, max(0, free - leave))
    finally:
        os.close(fd)
    return filler


async def _end(sig: SignalingClient, session_id: str) -> None:
    with contextlib.suppress(RtcAnnotatorError):
        await sig.end_session(session_id)


@pytest.mark.parametrize("mounted", ["files", "cache_dir"])
async def test_disk_full_during_transfer(
    tmp_path: Path, noisy_video: Path, make_settings: MakeSettings, start_agent: StartAgent,
    mounted: str,
) -> None:
    """``files``: only the file cache is on the full disk, 64 KiB stay free. ``cache_dir``: the
    outbox is on it too and not one byte is left; deleting the partial file is what frees the
    room for the outbox's record of the job's end, and the client still gets its JOB_FAILED."""
    cache_dir = tmp_path / "w-full-cache"
    disk = cache_dir / "files"
    disk.mkdir(parents=True)
    mountpoint = disk if mounted == "files" else cache_dir
    _mount_tmpfs(mountpoint, "72m")
    leave = 64 * 1024 if mounted == "files" else 0
    sha = await file_sha256(noisy_video)
    size = await asyncio.to_thread(os.path.getsize, noisy_video)
    client = make_settings("laptop", role="client")
    sig = SignalingClient.from_settings(client.signaling, name="laptop", reconnect_min_s=0.05)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}")
    agent = None
    try:
        agent = await start_agent("w-full", cache_dir=cache_dir)
        await sig.connect()
        partial = disk / "partial" / f"{sha}.part"
        slow = dataclasses.replace(fast_link(), bulk_high_water=256 * 1024,
                                   bulk_low_threshold=128 * 1024)
        filled: dict[str, Any] = {}

        def fill_disk_mid_transfer(offset: int, frame: bytes) -> bytes:
            if "at" not in filled and partial.exists() and partial.stat().st_size >= MiB:
                filled["at"] = offset
                filled["file"] = _fill(disk, leave=leave)
            return frame

        sid, worker, link = await connect_to(sig, list(PIPELINES), options=slow)
        session = ClientSession(link, store.ingest, chunk_hook=fill_disk_mid_transfer)
        async with asyncio.timeout(30):
            result = await session.submit(noisy_video, pipelines=PIPELINES,
                                          job_id="fault-disk-full", transfer="rtc")
        await session.close()
        await link.close("done")
        await _end(sig, sid)
        assert 0 < filled["at"] < size
        assert not result.ok
        assert result.error is not None
        assert result.error.code == "NO_DISK_SPACE", result.error
        assert "disk" in result.error.message and result.error.hint
        # the partial file was removed and nothing was committed
        assert list((disk / "partial").iterdir()) == []
        assert not (disk / "blobs" / sha).exists()
        assert await store.count_artifacts() == 0

        # space comes back: the same worker takes the same video and completes
        filled["file"].unlink()
        sid, worker, link = await connect_to(sig, list(PIPELINES))
        assert worker == "w-full"
        session = ClientSession(link, store.ingest)
        async with asyncio.timeout(30):
            again = await session.submit(noisy_video, pipelines=PIPELINES,
                                         job_id="fault-disk-ok", transfer="rtc")
        await session.close()
        await link.close("done")
        await _end(sig, sid)
        assert again.ok, again.error
        assert again.sent_bytes == size
        assert len(await store_contents(store, sha)) == again.envelopes == 5
    finally:
        await store.close()
        await sig.close()
        if agent is not None:
            await stop_agent(agent)
        await asyncio.to_thread(subprocess.run, ["umount", "-l", str(mountpoint)],
                                capture_output=True, timeout=10)
