"""Jobs belong to the client that submitted them; per-link and per-client limits.

Real aiortc peers on 127.0.0.1. The worker agent sets ``link.peer_identity`` from the signaling
server's ``session_started`` (the client's token id); here the test sets it the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from rtc_annotator.protocol import peer as proto
from rtc_annotator.transport.peer import PeerLink
from rtc_annotator.transport.worker_session import JobServer
from tests.transport.conftest import Env, RecordingSink, ToyExecutor, make_file
from tests.transport.test_jobs import eventually

PIPES = {"scenes": {}}
SHA = "ab" * 32


async def link_as(env: Env, server: JobServer, identity: str) -> PeerLink:
    client, worker = await env.connect(server)
    worker.peer_identity = identity  # what WorkerAgent takes from session_started
    return client


async def reply(link: PeerLink, msg: proto.PeerMessage, kind: type, within: float = 10.0,
                ) -> proto.PeerMessage:
    """Send ``msg`` on a bare link and return the first answer of type ``kind``."""
    await link.send(msg)
    async with asyncio.timeout(within):
        while True:
            got = await link.recv()
            if isinstance(got, kind):
                return got


async def test_another_client_cannot_attach_cancel_or_ack(env: Env, tmp_path: Path) -> None:
    executor = ToyExecutor(batches=4)
    executor.gate, executor.gate_after = asyncio.Event(), 2
    server = env.server(executor)
    owner_link = await link_as(env, server, "token:alice")
    thief = await link_as(env, server, "token:mallory")
    sink = RecordingSink()
    video = make_file(tmp_path / "v.mp4", 4000)
    job = asyncio.create_task(env.client(owner_link, sink).submit(
        video, pipelines=PIPES, job_id="job-a", transfer="rtc"))
    await eventually(lambda: sink.calls >= 2, within=10)

    for msg in (proto.Attach(job_id="job-a", last_acked_seq=0), proto.Cancel(job_id="job-a"),
                proto.ArtifactAck(job_id="job-a", seq=4, final=True)):
        answer = await reply(thief, msg, proto.JobRejected)
        assert isinstance(answer, proto.JobRejected)
        assert answer.job_id == "job-a" and answer.error.code == "NOT_JOB_OWNER", msg

    assert server.jobs["job-a"].link is not None and not server.jobs["job-a"].machine.terminal
    executor.gate.set()
    result = await asyncio.wait_for(job, 20)
    # the owner got every batch: nothing moved to the thief, nothing was cancelled
    assert result.ok and result.batches == 4 and len(sink.envelopes) == 8


async def test_cancel_answers_unknown_and_ended_jobs(env: Env, tmp_path: Path) -> None:
    server = env.server(ToyExecutor(batches=1))
    link = await link_as(env, server, "token:alice")
    answer = await reply(link, proto.Cancel(job_id="never-submitted"), proto.JobRejected)
    assert isinstance(answer, proto.JobRejected) and answer.error.code == "UNKNOWN_JOB"

    # a job that ended but whose end the client has not acknowledged yet: JOB_ENDED
    video = make_file(tmp_path / "mnt" / "v.mp4", 2000)
    shared_server = env.server(ToyExecutor(batches=1), storage=env.storage(tmp_path / "mnt"))
    raw = await link_as(env, shared_server, "token:alice")
    req = proto.JobRequest(job_id="job-1", pipelines=PIPES, input=proto.SharedInput(
        storage_backend="vast", relative_path="v.mp4", size=2000,
        fingerprint=proto.fingerprint_file(video)))
    await raw.send(req)
    async with asyncio.timeout(10):
        while not isinstance(await raw.recv(), proto.JobDone):
            pass
    answer = await reply(raw, proto.Cancel(job_id="job-1"), proto.JobRejected)
    assert isinstance(answer, proto.JobRejected) and answer.error.code == "JOB_ENDED"
    # and another client asking about it learns only that it is not theirs
    stranger = await link_as(env, shared_server, "token:mallory")
    answer = await reply(stranger, proto.Cancel(job_id="job-1"), proto.JobRejected)
    assert isinstance(answer, proto.JobRejected) and answer.error.code == "NOT_JOB_OWNER"


async def test_owner_takeover_tells_the_first_link(env: Env, tmp_path: Path) -> None:
    executor = ToyExecutor(batches=4)
    executor.gate, executor.gate_after = asyncio.Event(), 2
    server = env.server(executor)
    first = await link_as(env, server, "token:alice")
    second = await link_as(env, server, "token:alice")
    sink1, sink2 = RecordingSink(), RecordingSink()
    job = asyncio.create_task(env.client(first, sink1).submit(
        make_file(tmp_path / "v.mp4", 3000), pipelines=PIPES, job_id="job-t", transfer="rtc"))
    await eventually(lambda: sink1.calls >= 2, within=10)
    follow = asyncio.create_task(env.client(second, sink2).attach("job-t", last_acked_seq=2))
    moved = await asyncio.wait_for(job, 10)
    assert not moved.ok and moved.error is not None and moved.error.code == "JOB_MOVED"
    assert moved.last_seq == 2
    executor.gate.set()
    result = await asyncio.wait_for(follow, 20)
    assert result.ok and result.batches == 2
    assert len(sink1.envelopes) + len(sink2.envelopes) == 8


async def test_too_many_jobs_per_client(env: Env, tmp_path: Path) -> None:
    executor = ToyExecutor(batches=1)
    executor.gate, executor.gate_after = asyncio.Event(), 0
    server = env.server(executor)
    server.max_queued_jobs = 2
    link = await link_as(env, server, "token:alice")
    other = await link_as(env, server, "token:bob")
    answers = []
    for i in range(3):
        req = proto.JobRequest(job_id=f"j{i}", pipelines=PIPES,
                               input=proto.RtcInput(name="a.mp4", size=10,
                                                    sha256=hashlib.sha256(str(i).encode()).hexdigest()))
        answers.append(await reply(link, req, proto.JobAccepted | proto.JobRejected))
    assert [a.type for a in answers] == ["JOB_ACCEPTED", "JOB_ACCEPTED", "JOB_REJECTED"]
    refused = answers[2]
    assert isinstance(refused, proto.JobRejected) and refused.error.code == "TOO_MANY_JOBS"
    assert "limit 2" in refused.error.message
    # another client is not affected by alice's queue
    ok = await reply(other, proto.JobRequest(
        job_id="b0", pipelines=PIPES, input=proto.RtcInput(name="b.mp4", size=10, sha256=SHA)),
        proto.JobAccepted | proto.JobRejected)
    assert ok.type == "JOB_ACCEPTED"


async def test_too_many_open_transfers_per_link(env: Env) -> None:
    server = env.server(ToyExecutor())
    server.max_open_transfers = 2
    link = await link_as(env, server, "token:alice")
    statuses: list[proto.TransferStatus] = []
    for no in (1, 2, 3):
        offer = proto.TransferOffer(transfer_no=no, job_id="j", name="f.bin", size=1000,
                                    sha256=f"{no:02d}" * 32)
        status = await reply(link, offer, proto.TransferStatus)
        assert isinstance(status, proto.TransferStatus)
        statuses.append(status)
    assert [s.error for s in statuses[:2]] == [None, None]
    third = statuses[2]
    assert third.transfer_no == 3 and third.error is not None
    assert third.error.code == "TOO_MANY_TRANSFERS" and "limit 2" in third.error.message
    # let the worker put the two open transfers aside before the test ends
    await link.close("test over")
    await asyncio.wait_for(env.tasks[-1], 15)
