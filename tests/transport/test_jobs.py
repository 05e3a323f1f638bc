"""End-to-end job exchange between two real aiortc peers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from rtc_annotator.transport.client_session import JobInterrupted
from tests.transport.conftest import Env, RecordingSink, ToyExecutor, make_file

PIPES = {"scenes": {"threshold": 27}}


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Wait for a condition another peer brings about (a message in flight)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)
    return True


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_shared_path_is_read_in_place_with_zero_bytes_sent(env: Env, tmp_path: Path) -> None:
    laptop = tmp_path / "laptop-mnt"
    cluster = tmp_path / "cluster-mnt"
    make_file(laptop / "alice" / "clips" / "a.mp4", 300_000)
    make_file(cluster / "alice" / "clips" / "a.mp4", 300_000)  # same bytes, other mount point
    execu = ToyExecutor()
    server = env.server(execu, storage=env.storage(cluster))
    client_link, worker_link = await env.connect(server)
    sink = RecordingSink()
    session = env.client(client_link, sink, storage=env.storage(laptop))

    result = await session.submit(laptop / "alice" / "clips" / "a.mp4", pipelines=PIPES)

    assert result.ok, result.error
    assert result.transfer == "shared"
    assert result.sent_bytes == 0
    assert client_link.bulk_sent_bytes == 0 and worker_link.bulk_received_bytes == 0
    assert execu.paths == [cluster / "alice" / "clips" / "a.mp4"]
    assert len(sink.ids()) == 6 and len(set(sink.ids())) == 6
    assert result.pipelines["scenes"].artifacts == 6
    assert await eventually(lambda: not server.outbox.has(result.job_id))  # final ack


async def test_missing_backend_falls_back_to_transfer_with_same_results(
    env: Env, tmp_path: Path
) -> None:
    laptop = tmp_path / "laptop-mnt"
    cluster = tmp_path / "cluster-mnt"
    video = make_file(laptop / "alice" / "a.mp4", 700_000)
    make_file(cluster / "alice" / "a.mp4", 700_000)
    # Reference run over the shared path.
    ref_exec = ToyExecutor()
    ref_server = env.server(ref_exec, storage=env.storage(cluster))
    link_a, _ = await env.connect(ref_server)
    ref_sink = RecordingSink()
    ref = await env.client(link_a, ref_sink, storage=env.storage(laptop)).submit(
        video, pipelines=PIPES)
    # A worker without the backend.
    execu = ToyExecutor()
    server = env.server(execu, storage=env.storage(cluster, name="lustre"))
    link_b, worker_b = await env.connect(server)
    sink = RecordingSink()

    result = await env.client(link_b, sink, storage=env.storage(laptop)).submit(
        video, pipelines=PIPES)

    assert ref.ok and ref.transfer == "shared"
    assert result.ok, result.error
    assert result.transfer == "rtc"
    assert result.sent_bytes == 700_000
    assert _sha(execu.paths[0]) == _sha(video)
    assert execu.paths[0].parent.name == _sha(video)  # content-addressed cache
    assert sorted(sink.ids()) == sorted(ref_sink.ids())


async def test_path_escape_is_refused_with_path_error(env: Env, tmp_path: Path) -> None:
    laptop = tmp_path / "laptop-mnt"
    cluster = tmp_path / "cluster-mnt"
    video = make_file(laptop / "alice" / "a.mp4", 10_000)
    make_file(tmp_path / "secret" / "a.mp4", 10_000)
    (cluster / "alice").mkdir(parents=True)
    (cluster / "alice" / "a.mp4").symlink_to(tmp_path / "secret" / "a.mp4")
    execu = ToyExecutor()
    server = env.server(execu, storage=env.storage(cluster))
    link, _ = await env.connect(server)

    result = await env.client(link, RecordingSink(), storage=env.storage(laptop)).submit(
        video, pipelines=PIPES)

    assert not result.ok
    assert result.error is not None and result.error.code == "PATH_ERROR"
    assert "escape" in result.error.message
    assert execu.paths == []


async def test_same_sha256_twice_transfers_nothing(env: Env, tmp_path: Path) -> None:
    video = make_file(tmp_path / "home" / "b.mp4", 500_000)
    execu = ToyExecutor(batches=1)
    server = env.server(execu)
    link, worker = await env.connect(server)
    session = env.client(link, RecordingSink())

    first = await session.submit(video, pipelines=PIPES)
    bulk_after_first = worker.bulk_received_bytes
    copy = make_file(tmp_path / "elsewhere" / "renamed.mp4", 500_000)
    second = await session.submit(copy, pipelines=PIPES)

    assert first.ok and first.transfer == "rtc" and first.sent_bytes == 500_000
    assert second.ok and second.transfer == "cached" and second.sent_bytes == 0
    assert worker.bulk_received_bytes == bulk_after_first
    assert execu.paths[0] == execu.paths[1]
