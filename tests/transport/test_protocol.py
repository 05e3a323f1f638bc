"""Peer protocol core without sockets: codec, chunk frames, fingerprint, state machines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc_annotator.errors import ErrorEnvelope, ProtocolError
from rtc_annotator.protocol import peer as proto
from rtc_annotator.protocol.peer import (
    InvalidTransition,
    JobMachine,
    JobState,
    TransferMachine,
    TransferState,
)

SHA = "ab" * 32

SAMPLES: list[Any] = [
    proto.Hello(versions=[1], role="client", name="laptop", software="0.1.0"),
    proto.JobRequest(job_id="j1", pipelines={"scenes": {"threshold": 27}}, model_profile="fast",
                     input=proto.SharedInput(storage_backend="vast", user_subdir="alice",
                                             relative_path="clips/a.mp4", size=10,
                                             fingerprint="v1:00")),
    proto.JobRequest(job_id="j2", pipelines={"transcript": {}},
                     input=proto.RtcInput(name="a.mp4", size=10, sha256=SHA)),
    proto.JobAccepted(job_id="j1", queue_position=2, needs_transfer=True),
    proto.BackendNotAvailable(job_id="j1", storage_backend="vast", message="not here"),
    proto.PathErrorMsg(job_id="j1", reason="escape", message="leaves the backend"),
    proto.JobRejected(job_id="j1", error=ErrorEnvelope(code="FILE_TOO_LARGE", message="big")),
    proto.TransferOffer(transfer_no=1, job_id="j2", name="a.mp4", size=10, sha256=SHA),
    proto.TransferStatus(transfer_no=1, sha256=SHA, have_bytes=5),
    proto.TransferDone(transfer_no=1, sent_bytes=10),
    proto.Progress(job_id="j1", stage="transfer", fraction=0.5, bytes=5, rate=1e6),
    proto.ArtifactBatch(job_id="j1", seq=1, envelopes=[{"artifact_id": "x", "payload": {"a": 1}}]),
    proto.ArtifactAck(job_id="j1", seq=1, final=True),
    proto.JobDone(job_id="j1", last_seq=1, transfer="cached",
                  pipelines={"scenes": proto.PipelineStats(artifacts=3, seconds=1.5)}),
    proto.JobFailed(job_id="j1", error=ErrorEnvelope(code="CANCELLED", message="stop", hint="")),
    proto.Cancel(job_id="j1"),
    proto.Attach(job_id="j1", last_acked_seq=4),
    proto.JobMoved(job_id="j1", message="attached on another link"),
    proto.AuthChallenge(nonce="A" * 43),
    proto.AuthProof(public_key="ed25519:" + "B" * 43, signature="C" * 86, vouch="x.y"),
    proto.Ping(nonce=7),
    proto.Pong(nonce=7),
]


def test_every_message_type_round_trips_and_names_are_exact() -> None:
    seen = set()
    for msg in SAMPLES:
        data = proto.encode(msg)
        assert isinstance(data, bytes)
        back = proto.decode(data)
        assert back == msg
        seen.add(back.type)
    assert seen | {"ERROR"} == proto.MESSAGE_TYPES
    assert {"HELLO", "JOB_REQUEST", "JOB_ACCEPTED", "BACKEND_NOT_AVAILABLE", "PATH_ERROR",
            "JOB_REJECTED", "TRANSFER_OFFER", "TRANSFER_STATUS", "TRANSFER_DONE", "PROGRESS",
            "ARTIFACT_BATCH", "ARTIFACT_ACK", "JOB_DONE", "JOB_FAILED", "CANCEL", "ATTACH",
            "PING", "PONG"} <= proto.MESSAGE_TYPES


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\xc1\xff\x00", "not valid msgpack"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({"type": "NOPE"}), "unknown message type"),
        (msgpack.packb({"no": "type"}), "unknown message type"),
        (msgpack.packb({"type": "CANCEL"}), "invalid CANCEL: job_id"),
        (msgpack.packb({"type": "CANCEL", "job_id": "j", "extra": 1}), "invalid CANCEL"),
        (msgpack.packb({"type": "ATTACH", "job_id": "../etc", "last_acked_seq": 0}),
         "invalid ATTACH: job_id"),
        (msgpack.packb({"type": "JOB_REQUEST", "job_id": "j", "pipelines": {},
                        "input": {"transfer": "ftp"}}), "invalid JOB_REQUEST"),
        (msgpack.packb({"type": "TRANSFER_OFFER", "transfer_no": 1, "job_id": "j", "name": "a",
                        "size": -1, "sha256": SHA}), "invalid TRANSFER_OFFER: size"),
    ],
)
def test_garbage_gives_a_protocol_error(data: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        proto.decode(data)
    assert fragment in info.value.message
    assert info.value.code == "PROTOCOL_ERROR"


def test_oversized_and_text_messages_are_refused() -> None:
    big = proto.encode(proto.ArtifactBatch(job_id="j", seq=1, envelopes=[{"x": "y" * 5000}]))
    with pytest.raises(ProtocolError, match="exceeds"):
        proto.decode(big, max_size=1000)
    with pytest.raises(ProtocolError, match="text"):
        proto.decode('{"type": "PING"}')


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_decode_never_raises_anything_but_protocol_error(data: bytes) -> None:
    try:
        proto.decode(data)
    except ProtocolError:
        pass


def test_version_negotiation_picks_highest_common_or_fails() -> None:
    assert proto.negotiate_version((1, 2, 3), [2, 3, 9]) == 3
    with pytest.raises(ProtocolError) as info:
        proto.negotiate_version((1,), [2])
    assert info.value.code == "VERSION_MISMATCH"


def test_chunk_frames_carry_offset_and_detect_corruption() -> None:
    frame = proto.pack_chunk(7, 123456789, b"hello world")
    no, off, payload, ok = proto.unpack_chunk(frame)
    assert (no, off, bytes(payload), ok) == (7, 123456789, b"hello world", True)
    bad = frame[:-1] + b"X"
    assert proto.unpack_chunk(bad)[3] is False
    with pytest.raises(ProtocolError):
        proto.unpack_chunk(b"short")


def test_fingerprint_depends_on_size_head_and_tail_only(tmp_path: Path) -> None:
    size = 3 * proto.FINGERPRINT_WINDOW
    base = bytearray(b"a" * size)
    a = tmp_path / "a"
    a.write_bytes(base)
    middle = bytearray(base)
    middle[size // 2] = ord("b")
    tail = bytearray(base)
    tail[-1] = ord("b")
    (tmp_path / "mid").write_bytes(middle)
    (tmp_path / "tail").write_bytes(tail)
    (tmp_path / "short").write_bytes(base[:-1])
    fp = proto.fingerprint_file(a)
    assert fp.startswith("v1:")
    assert proto.fingerprint_file(tmp_path / "mid") == fp  # documented blind spot
    assert proto.fingerprint_file(tmp_path / "tail") != fp
    assert proto.fingerprint_file(tmp_path / "short") != fp
    (tmp_path / "tiny").write_bytes(b"x")
    assert proto.fingerprint_file(tmp_path / "tiny") != proto.fingerprint_file(a)


def test_job_machine_allows_the_table_and_refuses_the_rest() -> None:
    m = JobMachine("j1")
    for state in (JobState.WAITING_INPUT, JobState.QUEUED, JobState.RUNNING, JobState.DONE):
        m.state = state
    assert m.terminal
    with pytest.raises(InvalidTransition) as info:
        m.state = JobState.RUNNING
    assert "DONE to RUNNING" in info.value.message
    assert info.value.code == "INVALID_STATE"
    fresh = JobMachine("j2")
    with pytest.raises(InvalidTransition):
        fresh.state = JobState.DONE


def test_transfer_machine_covers_resume() -> None:
    m = TransferMachine(SHA)
    m.state = TransferState.SENDING
    m.state = TransferState.INTERRUPTED
    m.state = TransferState.OFFERED
    m.state = TransferState.SENDING
    m.state = TransferState.VERIFYING
    m.state = TransferState.COMPLETE
    with pytest.raises(InvalidTransition):
        m.state = TransferState.SENDING
