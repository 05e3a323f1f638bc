"""Fuzz the peer protocol: >= 10,000 hostile control messages through a real aiortc PeerLink
into a JobServer, then a pure hypothesis fuzz of ``protocol.peer.decode``.

Mutated msgpack, wrong types, unknown types, huge declared sizes, deep nesting and mutated real
JOB_REQUESTs go in over the control channel. The worker must answer every undecodable message
with ``ERROR`` (code ``PROTOCOL_ERROR``) and every decodable JOB_REQUEST with exactly one of
JOB_ACCEPTED / BACKEND_NOT_AVAILABLE / PATH_ERROR / JOB_REJECTED; it must never crash, and a
legitimate job on another link, and on the fuzzed link afterwards, still completes.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rtc_annotator.errors import ProtocolError, RtcAnnotatorError
from rtc_annotator.protocol import peer as proto
from rtc_annotator.transport.peer import PeerLink
from tests.transport.conftest import RecordingSink, make_file

from .conftest import Env, ToyExecutor
from .frames import mutated_peer_message, peer_frames, real_peer_messages

JOB_ANSWERS = {"JOB_ACCEPTED", "BACKEND_NOT_AVAILABLE", "PATH_ERROR", "JOB_REJECTED"}
BATCH = 250


def generated(n: int) -> list[bytes]:
    out: list[bytes] = []

    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(peer_frames())
    def collect(frame: bytes) -> None:
        out.append(frame)

    collect()
    return out


class Tap:
    """Every control message the worker sends to this client link, decoded as it arrives."""

    def __init__(self, link: PeerLink) -> None:
        self.messages: list[dict[str, Any]] = []
        self.sentinels: dict[str, asyncio.Event] = {}
        link.control.on("message", self._on)

    def _on(self, data: Any) -> None:
        obj = msgpack.unpackb(data, raw=False)
        self.messages.append(obj)
        if obj.get("type") == "JOB_REJECTED" and obj["job_id"] in self.sentinels:
            self.sentinels[obj["job_id"]].set()

    async def sentinel(self, link: PeerLink, name: str) -> None:
        self.sentinels[name] = asyncio.Event()
        link.control.send(proto.encode(proto.Attach(job_id=name, last_acked_seq=0)))
        await asyncio.wait_for(self.sentinels[name].wait(), 30)


def expectation(frame: bytes, max_size: int) -> tuple[str, str | None]:
    """("error", None) for an undecodable frame, ("job", job_id) for a JOB_REQUEST the
    JobServer must answer, ("other", None) otherwise."""
    try:
        msg = proto.decode(frame, max_size=max_size)
    except ProtocolError:
        return "error", None
    if isinstance(msg, proto.JobRequest):
        return "job", msg.job_id
    return "other", None


async def test_peer_fuzz_10k_messages_through_a_real_link(env: Env, tmp_path: Path) -> None:
    shared = tmp_path / "share"
    video = make_file(shared / "alice" / "clip.mp4", 50_000)
    executor = ToyExecutor(batches=2, per_batch=2)
    server = env.server(executor, storage=env.storage(shared), max_bytes=10**9)
    # Generate every frame before the link exists: generation is synchronous and takes seconds
    # (over 10 s on a loaded machine), and a loop blocked that long lets both ends declare the
    # other silent (dead_after_s) and close the link.
    rng = random.Random(2)
    real = real_peer_messages()
    frames = generated(1200) + [mutated_peer_message(rng, real) for _ in range(8800)]
    frames += [msgpack.packb({"type": "PING", "nonce": 1, "pad": "x" * 100_000})] * 3  # > max
    rng.shuffle(frames)
    assert len(frames) >= 10_000
    expected = [expectation(frame, 64 * 1024) for frame in frames]

    fuzz_client, fuzz_worker = await env.connect(server, max_message_bytes=64 * 1024)
    tap = Tap(fuzz_client)

    must: Counter[str] = Counter()
    jobs: Counter[str] = Counter()
    for start in range(0, len(frames), BATCH):
        for frame, (kind, job_id) in zip(frames[start:start + BATCH],
                                         expected[start:start + BATCH], strict=True):
            must[kind] += 1
            if job_id is not None:
                jobs[job_id] += 1
            fuzz_client.control.send(frame)
        await tap.sentinel(fuzz_client, f"sentinel-{start}")

    errors = [m for m in tap.messages if m.get("type") == "ERROR"]
    assert len(errors) >= must["error"] > 5_000
    assert all(e["error"]["code"] and e["error"]["message"] for e in errors)
    answered = Counter(m["job_id"] for m in tap.messages if m.get("type") in JOB_ANSWERS)
    for job_id, n in jobs.items():
        assert answered[job_id] >= n, f"JOB_REQUEST {job_id} was not answered"
    assert not fuzz_worker.closed.is_set() and not fuzz_client.closed.is_set()
    assert executor.paths == [] or all(p.is_relative_to(tmp_path) for p in executor.paths)

    # a legitimate job on another link completes...
    from rtc_annotator.protocol.peer import fingerprint_file  # noqa: PLC0415

    other_client, _ = await env.connect(server)
    sink = RecordingSink()
    session = env.client(other_client, sink, storage=env.storage(shared))
    result = await asyncio.wait_for(session.submit(video, pipelines={"scenes": {}}), 30)
    assert result.transfer == "shared" and len(sink.envelopes) == 4
    # ...and so does one on the fuzzed link
    sink2 = RecordingSink()
    late = env.client(fuzz_client, sink2, storage=env.storage(shared))
    result2 = await asyncio.wait_for(late.submit(video, pipelines={"scenes": {}}), 30)
    assert result2.transfer == "shared" and len(sink2.envelopes) == 4
    assert fingerprint_file(video)
    # the fuzzed link goes away: its serve() ends by itself and lets go of every partial file
    serve_task = env.tasks[0]
    await fuzz_client.close()
    await asyncio.wait_for(serve_task, 15)
    # jobs the fuzz left waiting for an upload are cancelled, not leaked
    for job in list(server.jobs.values()):
        if job.task is not None and not job.task.done():
            job.task.cancel()


# --------------------------------------------------------------------------- pure fuzz

@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(peer_frames())
def test_decode_fuzz_shaped_messages(frame: bytes) -> None:
    try:
        msg = proto.decode(frame)
    except RtcAnnotatorError as exc:
        assert type(exc) is ProtocolError and exc.code == "PROTOCOL_ERROR" and exc.message
    else:
        assert proto.decode(proto.encode(msg)) == msg  # what decodes re-encodes the same


@settings(max_examples=4000, deadline=None)
@given(st.randoms(use_true_random=False))
def test_decode_fuzz_mutated_real_messages(rnd: random.Random) -> None:
    frame = mutated_peer_message(rnd, real_peer_messages())
    try:
        proto.decode(frame)
    except ProtocolError as exc:
        assert exc.code == "PROTOCOL_ERROR"


def test_unhashable_type_field_is_a_protocol_error() -> None:
    """Regression: a list or map as ``type`` raised TypeError inside the data channel
    callback instead of answering ERROR."""
    for kind in (["JOB_REQUEST"], {"a": 1}):
        data = msgpack.packb({"type": kind, "job_id": "x"})
        try:
            proto.decode(data)
        except ProtocolError as exc:
            assert exc.code == "PROTOCOL_ERROR" and "unknown message type" in exc.message
        else:
            raise AssertionError("decoded")
