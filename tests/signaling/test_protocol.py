"""The signaling codec, tokens and TURN credentials, without sockets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc_annotator.protocol.signaling import (
    Codes,
    FrameError,
    Route,
    Signal,
    SignalingError,
    decode_frame,
    decode_request,
    encode,
    error_frame,
)
from rtc_annotator.signaling_client import backoff_delay
from signaling import tokens
from signaling.turn import IceConfig, turn_credentials


def test_route_round_trip() -> None:
    msg = decode_request(json.dumps({"type": "route", "id": "7", "pipelines": ["scenes"],
                                     "required_storage": "vast", "min_gpu_memory_mb": 8000}))
    assert isinstance(msg, Route)
    assert msg.required_storage == "vast" and msg.strict is False
    again = decode_request(encode(msg))
    assert again == msg


def test_signal_ignores_from_and_keeps_payload() -> None:
    msg = decode_request(json.dumps({"type": "signal", "session_id": "s", "from": "admin:x",
                                     "data": {"kind": "candidate", "candidate": "c",
                                              "sdpMLineIndex": 0}}))
    assert isinstance(msg, Signal)
    assert "from" not in msg.model_dump()
    assert msg.data.model_dump() == {"kind": "candidate", "candidate": "c", "sdpMLineIndex": 0}


@pytest.mark.parametrize(
    ("frame", "code", "rid"),
    [
        ("{", Codes.MALFORMED_FRAME, None),
        ('"text"', Codes.MALFORMED_FRAME, None),
        ('{"id": "a"}', Codes.MALFORMED_FRAME, "a"),
        ('{"type": "nope", "id": "b"}', Codes.UNKNOWN_TYPE, "b"),
        ('{"type": "route", "id": "c", "min_gpu_memory_mb": -1}', Codes.INVALID_MESSAGE, "c"),
        ('{"type": "hello", "id": "d", "token": "t", "role": "admin"}', Codes.INVALID_MESSAGE,
         "d"),
        ('{"type": "register", "id": "e", "capabilities": {"name": "w", "storage_backends": '
         '[{"name": "vast", "base_path": "/mnt/vast"}]}}', Codes.INVALID_MESSAGE, "e"),
        ('{"type": "register", "id": "f", "capabilities": {"name": "../etc"}}',
         Codes.INVALID_MESSAGE, "f"),
    ],
)
def test_bad_frames_raise_frame_error(frame: str, code: str, rid: str | None) -> None:
    with pytest.raises(FrameError) as err:
        decode_request(frame)
    assert err.value.code == code and err.value.request_id == rid
    reply = error_frame(err.value)
    assert reply["type"] == "error" and reply["code"] == code and reply["hint"]
    assert reply.get("id") == rid


def test_size_limit() -> None:
    frame = json.dumps({"type": "heartbeat", "id": "x", "pad": "y" * 200})
    with pytest.raises(FrameError) as err:
        decode_request(frame, max_bytes=100)
    assert err.value.code == Codes.FRAME_TOO_LARGE
    with pytest.raises(FrameError):  # multi-byte characters count as bytes
        decode_request('{"type":"heartbeat","id":"' + "\u00e9" * 60 + '"}', max_bytes=100)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=50),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                              lambda c: st.lists(c, max_size=4)
                              | st.dictionaries(st.sampled_from(
                                  ["type", "id", "data", "kind", "pipelines", "token"]), c,
                                  max_size=4), max_leaves=12).map(json.dumps)))
def test_decoder_only_raises_frame_error(frame: str | bytes) -> None:
    try:
        decode_request(frame)
    except FrameError as exc:
        assert exc.code in vars(Codes).values()


def test_decode_frame_client_side() -> None:
    assert decode_frame('{"type": "ok", "id": "1"}')["id"] == "1"
    with pytest.raises(SignalingError):
        decode_frame("[]")
    err = SignalingError.from_frame({"type": "error", "code": "QUEUE_FULL", "message": "m",
                                     "hint": "h"})
    assert err.code == "QUEUE_FULL" and err.one_line() == "m -- h"


def test_tokens_sign_verify_expire() -> None:
    key = b"k" * 32
    token, claims = tokens.issue(key, room="lab", role="worker", ttl_s=60, now=1000.0)
    back = tokens.verify(key, token, now=1059.0)
    assert back == claims and back.role == "worker" and back.room == "lab"
    with pytest.raises(SignalingError) as err:
        tokens.verify(key, token, now=1061.0)
    assert err.value.code == Codes.TOKEN_EXPIRED
    head, body, sig = token.split(".")
    forged_body = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(body + "==").replace(b'"worker"', b'"admin"')
    ).rstrip(b"=").decode()
    for bad in (f"{head}.{forged_body}.{sig}", token + "x", "a.b", "", token.replace(head, "x")):
        with pytest.raises(SignalingError) as err:
            tokens.verify(key, bad, now=1001.0)
        assert err.value.code == Codes.TOKEN_INVALID
    with pytest.raises(SignalingError):
        tokens.verify(b"other", token, now=1001.0)


def test_turn_credentials_match_coturn_scheme() -> None:
    user, password = turn_credentials("s3cret", "client:laptop", ttl_s=600, now=1_700_000_000)
    assert user == "1700000600:client:laptop"
    digest = hmac.new(b"s3cret", user.encode(), hashlib.sha1).digest()
    assert password == base64.b64encode(digest).decode()
    ice = IceConfig(stun_urls=("stun:127.0.0.1:3478",), turn_urls=("turn:127.0.0.1:3478",),
                    turn_secret="s3cret")
    servers = ice.servers_for("w", now=0)
    assert servers[0] == {"urls": ["stun:127.0.0.1:3478"]}
    assert servers[1]["username"].endswith(":w") and servers[1]["credential"]
    assert IceConfig().servers_for("w") == []  # nothing public by default
    assert IceConfig(turn_urls=("turn:x",)).servers_for("w") == []  # no secret, no TURN


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, base_s=0.5, max_s=8.0, rng=rng) for n in range(10)]
    assert 0.25 <= delays[0] <= 0.5
    assert 2.0 <= delays[3] <= 4.0
    assert all(4.0 <= d <= 8.0 for d in delays[5:])
    assert len(set(delays)) == len(delays)  # jittered
