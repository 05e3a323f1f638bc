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


async def eventually(check: Callable[[], bool], within: float = 5.0) -> bool:
    """Wait for a condition another peer brings about (a message in flight)."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - the condition lives in another peer's state
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


async def test_connection_killed_at_half_transfer_resumes_and_sha_matches(
    env: Env, tmp_path: Path
) -> None:
    size = 8 * 1024 * 1024
    video = make_file(tmp_path / "home" / "big.mp4", size)
    execu = ToyExecutor(batches=1)
    server = env.server(execu)
    link1, worker1 = await env.connect(server)

    async def kill_at_half() -> None:
        await eventually(lambda: worker1.bulk_received_bytes >= size // 2, within=15)
        await link1.close("test kills the connection")

    killer = asyncio.create_task(kill_at_half())
    first = env.client(link1, RecordingSink())
    with pytest.raises(JobInterrupted):
        await first.submit(video, pipelines=PIPES, job_id="resume-1")
    await killer
    partial = server.cache.partial_path(_sha(video))
    assert await eventually(lambda: worker1.closed.is_set())
    assert server.cache.lookup(_sha(video)) is None
    held = partial.stat().st_size
    assert size // 2 <= held < size

    link2, _ = await env.connect(server)
    sink = RecordingSink()
    result = await env.client(link2, sink).attach("resume-1", last_acked_seq=0, input_path=video)

    assert result.ok, result.error
    assert result.sent_bytes == size - held  # resumed from the verified bytes, not restarted
    cached = server.cache.lookup(_sha(video))
    assert cached is not None and _sha(cached) == _sha(video)
    assert not partial.exists()
    assert len(sink.ids()) == 2


async def test_chunk_corrupted_in_flight_is_detected_and_resent(env: Env, tmp_path: Path) -> None:
    size = 1024 * 1024
    video = make_file(tmp_path / "home" / "c.mp4", size)
    execu = ToyExecutor(batches=1)
    server = env.server(execu)
    link, _ = await env.connect(server)
    hits: list[int] = []

    def flip_one_byte(offset: int, frame: bytes) -> bytes:
        if offset == 3 * 65536 and not hits:
            hits.append(offset)
            return frame[:-1] + bytes([frame[-1] ^ 0xFF])  # CRC no longer matches
        return frame

    result = await env.client(link, RecordingSink(), chunk_hook=flip_one_byte).submit(
        video, pipelines=PIPES)

    assert hits == [3 * 65536]
    assert result.ok, result.error
    assert result.sent_bytes > size  # the corrupt chunk and what followed were sent again
    cached = server.cache.lookup(_sha(video))
    assert cached is not None and _sha(cached) == _sha(video)


async def test_corruption_that_passes_chunk_crc_fails_the_sha256_check(
    env: Env, tmp_path: Path
) -> None:
    from rtc_annotator.protocol import peer as proto

    video = make_file(tmp_path / "home" / "d.mp4", 300_000)
    execu = ToyExecutor(batches=1)
    server = env.server(execu)
    link, _ = await env.connect(server)

    def rewrite(offset: int, frame: bytes) -> bytes:
        if offset == 65536:  # a consistent frame with different bytes: only sha256 can tell
            no, off, payload, _ = proto.unpack_chunk(frame)
            return proto.pack_chunk(no, off, bytes(b ^ 1 for b in payload))
        return frame

    result = await env.client(link, RecordingSink(), chunk_hook=rewrite).submit(
        video, pipelines=PIPES)

    assert not result.ok
    assert result.error is not None and result.error.code == "TRANSFER_CORRUPT"
    assert server.cache.lookup(_sha(video)) is None
    assert not server.cache.partial_path(_sha(video)).exists()
    assert execu.paths == []


async def test_client_gone_mid_job_then_reattach_gets_every_batch_once(
    env: Env, tmp_path: Path
) -> None:
    root = tmp_path / "mnt"
    video = make_file(root / "alice" / "e.mp4", 50_000)
    execu = ToyExecutor(batches=6, per_batch=3)
    execu.gate, execu.gate_after = asyncio.Event(), 3
    server = env.server(execu, storage=env.storage(root))
    link1, worker1 = await env.connect(server)
    sink1 = RecordingSink()
    first = env.client(link1, sink1, storage=env.storage(root))
    task = asyncio.create_task(first.submit(video, pipelines=PIPES, job_id="reattach-1"))
    assert await eventually(lambda: sink1.calls == 3)
    await link1.close("client killed")
    with pytest.raises(JobInterrupted):
        await task
    assert await eventually(lambda: worker1.closed.is_set())
    execu.gate.set()  # the job goes on while no client is attached
    assert await eventually(lambda: server.jobs["reattach-1"].final is not None)

    link2, _ = await env.connect(server)
    sink2 = RecordingSink()
    result = await env.client(link2, sink2).attach("reattach-1", last_acked_seq=sink1.calls)

    assert result.ok, result.error
    assert result.last_seq == 6 and result.batches == 3
    every = sink1.ids() + sink2.ids()
    assert len(every) == 18 and len(set(every)) == 18
    assert await eventually(lambda: not server.outbox.has("reattach-1"))


async def test_outbox_replays_after_worker_restart(env: Env, tmp_path: Path) -> None:
    root = tmp_path / "mnt"
    video = make_file(root / "alice" / "f.mp4", 20_000)
    execu = ToyExecutor(batches=4)
    execu.gate, execu.gate_after = asyncio.Event(), 2
    server = env.server(execu, storage=env.storage(root))
    link1, _ = await env.connect(server)
    sink1 = RecordingSink()
    task = asyncio.create_task(env.client(link1, sink1, storage=env.storage(root)).submit(
        video, pipelines=PIPES, job_id="restart-1"))
    assert await eventually(lambda: sink1.calls == 2)
    await link1.close("client killed")
    with pytest.raises(JobInterrupted):
        await task
    execu.gate.set()
    assert await eventually(lambda: server.jobs["restart-1"].final is not None)

    restarted = env.server(ToyExecutor(), storage=env.storage(root), same_dirs=True)
    link2, _ = await env.connect(restarted)
    sink2 = RecordingSink()
    result = await env.client(link2, sink2).attach("restart-1", last_acked_seq=2)

    assert result.ok and result.last_seq == 4
    assert len(set(sink1.ids() + sink2.ids())) == len(sink1.ids() + sink2.ids()) == 8


async def test_cancel_stops_a_running_job(env: Env, tmp_path: Path) -> None:
    root = tmp_path / "mnt"
    video = make_file(root / "alice" / "g.mp4", 10_000)
    execu = ToyExecutor(batches=3)
    execu.gate, execu.gate_after = asyncio.Event(), 1  # never released
    server = env.server(execu, storage=env.storage(root))
    link, _ = await env.connect(server)
    session = env.client(link, RecordingSink(), storage=env.storage(root))
    task = asyncio.create_task(session.submit(video, pipelines=PIPES, job_id="cancel-1"))
    await asyncio.wait_for(execu.started.wait(), 5)

    await session.cancel("cancel-1")
    result = await asyncio.wait_for(task, 5)

    assert not result.ok
    assert result.error is not None and result.error.code == "CANCELLED"


async def test_file_over_the_size_limit_is_rejected(env: Env, tmp_path: Path) -> None:
    video = make_file(tmp_path / "home" / "h.mp4", 5000)
    server = env.server(ToyExecutor(), max_bytes=1000)
    link, worker = await env.connect(server)

    result = await env.client(link, RecordingSink()).submit(video, pipelines=PIPES)

    assert not result.ok
    assert result.error is not None and result.error.code == "FILE_TOO_LARGE"
    assert worker.bulk_received_bytes == 0


@pytest.mark.parametrize("worker_copy", ["missing", "different"])
async def test_missing_or_different_file_on_the_mount_falls_back_to_transfer(
    env: Env, tmp_path: Path, worker_copy: str
) -> None:
    laptop = tmp_path / "laptop-mnt"
    cluster = tmp_path / "cluster-mnt"
    video = make_file(laptop / "alice" / "a.mp4", 200_000, seed=1)
    if worker_copy == "different":
        make_file(cluster / "alice" / "a.mp4", 200_000, seed=2)  # same size, other bytes
    execu = ToyExecutor(batches=1)
    server = env.server(execu, storage=env.storage(cluster))
    link, _ = await env.connect(server)

    result = await env.client(link, RecordingSink(), storage=env.storage(laptop)).submit(
        video, pipelines=PIPES)

    assert result.ok, result.error
    assert result.transfer == "rtc" and result.sent_bytes == 200_000
    assert _sha(execu.paths[0]) == _sha(video)


async def test_hostile_requests_get_clear_answers(env: Env, tmp_path: Path) -> None:
    from rtc_annotator.protocol import peer as proto

    cluster = tmp_path / "cluster-mnt"
    make_file(cluster / "alice" / "a.mp4", 1000)
    execu = ToyExecutor(batches=1)
    server = env.server(execu, storage=env.storage(cluster))
    client, _ = await env.connect(server)

    async def ask(msg: proto.JobRequest | proto.Attach) -> proto.PeerMessage:
        await client.send(msg)
        return await asyncio.wait_for(client.recv(), 5)

    def shared(rel: str) -> proto.SharedInput:
        return proto.SharedInput(storage_backend="vast", user_subdir="alice", relative_path=rel,
                                 size=1000, fingerprint="v1:x")

    dotdot = await ask(proto.JobRequest(job_id="h1", pipelines=PIPES, input=shared("../../x")))
    absolute = await ask(proto.JobRequest(job_id="h2", pipelines=PIPES, input=shared("/etc/x")))
    wrong_fp = await ask(proto.JobRequest(job_id="h3", pipelines=PIPES, input=shared("a.mp4")))
    unknown = await ask(proto.Attach(job_id="nope", last_acked_seq=0))

    assert isinstance(dotdot, proto.PathErrorMsg) and dotdot.reason == "invalid"
    assert isinstance(absolute, proto.PathErrorMsg) and absolute.reason == "invalid"
    assert isinstance(wrong_fp, proto.PathErrorMsg) and wrong_fp.reason == "fingerprint_mismatch"
    assert str(cluster) not in wrong_fp.message  # local base paths never reach the peer
    assert isinstance(unknown, proto.JobRejected) and unknown.error.code == "UNKNOWN_JOB"
    assert execu.paths == [] and server.jobs == {}


async def test_duplicate_job_id_is_rejected(env: Env, tmp_path: Path) -> None:
    root = tmp_path / "mnt"
    video = make_file(root / "alice" / "a.mp4", 1000)
    execu = ToyExecutor(batches=1)
    execu.gate, execu.gate_after = asyncio.Event(), 0
    server = env.server(execu, storage=env.storage(root))
    link, _ = await env.connect(server)
    a = env.client(link, RecordingSink(), storage=env.storage(root))
    first = asyncio.create_task(a.submit(video, pipelines=PIPES, job_id="dup"))
    await asyncio.wait_for(execu.started.wait(), 5)
    link2, _ = await env.connect(server)

    second = await env.client(link2, RecordingSink(), storage=env.storage(root)).submit(
        video, pipelines=PIPES, job_id="dup")

    assert not second.ok and second.error is not None
    assert second.error.code == "DUPLICATE_JOB"
    execu.gate.set()
    assert (await asyncio.wait_for(first, 5)).ok


async def test_two_jobs_with_the_same_file_at_once_send_it_once(env: Env, tmp_path: Path) -> None:
    video = make_file(tmp_path / "home" / "same.mp4", 2 * 1024 * 1024)
    execu = ToyExecutor(batches=1)
    server = env.server(execu, job_slots=2)
    link, worker = await env.connect(server)
    session = env.client(link, RecordingSink())

    a, b = await asyncio.gather(session.submit(video, pipelines=PIPES),
                                session.submit(video, pipelines=PIPES))

    assert a.ok and b.ok, (a.error, b.error)
    assert a.sent_bytes + b.sent_bytes == 2 * 1024 * 1024
    assert worker.bulk_received_bytes < 2 * 2 * 1024 * 1024
    assert execu.paths[0] == execu.paths[1]
