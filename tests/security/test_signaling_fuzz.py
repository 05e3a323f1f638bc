"""Fuzz the signaling protocol: >= 10,000 hostile frames against a live server over real
websockets, then a pure (socket-free) hypothesis fuzz of the decoder.

Live: several connections (unauthenticated, client, worker, admin, server admin) fire
hypothesis-generated frames shaped like real requests plus mutated real frames (truncation,
type confusion, huge numbers, deep nesting, invalid UTF-8 as binary frames, oversized frames).
Every frame the decoder refuses must be answered by an ``error`` frame with that code (and the
id when one could be read); the server must never answer ``INTERNAL_ERROR``; a control client in
another room keeps being served during and after the barrage.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect as ws_connect

from rtc_annotator.protocol.signaling import Codes, FrameError, decode_request
from rtc_annotator.signaling_client import SignalingClient
from signaling.app import SignalingServer

from .conftest import ADMIN_SECRET, Raw, caps, make_room, open_raw, start_server
from .frames import mutated_signaling_frame, real_signaling_frames, signaling_frames

KNOWN_CODES = set(vars(Codes).values())
BATCH = 250


def generated_frames(n: int) -> list[str]:
    """``n`` hypothesis-generated request-shaped frames (generation only, no shrinking)."""
    out: list[str] = []

    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(signaling_frames())
    def collect(frame: str) -> None:
        out.append(frame)

    collect()
    return out


def expected_error(frame: str | bytes, max_bytes: int) -> tuple[str, str | None] | None:
    """(code, id) the server must answer with, or None when the frame decodes."""
    try:
        decode_request(frame, max_bytes=max_bytes)
    except FrameError as exc:
        return exc.code, exc.request_id
    return None


async def barrage(peer: Raw, frames: list[str | bytes], max_bytes: int,
                  tag: str) -> tuple[Counter[tuple[str, str | None]], list[dict[str, Any]]]:
    """Send ``frames`` in batches, each closed by a heartbeat sentinel; return what the server
    had to answer (a multiset) and every error frame it did answer."""
    must: Counter[tuple[str, str | None]] = Counter()
    errors: list[dict[str, Any]] = []
    for start in range(0, len(frames), BATCH):
        batch = frames[start:start + BATCH]
        for frame in batch:
            want = expected_error(frame, max_bytes)
            if want is not None:
                must[want] += 1
            await peer.ws.send(frame)
        sentinel = f"{tag}-sentinel-{start}"
        await peer.ws.send(json.dumps({"type": "heartbeat", "id": sentinel}))
        async with asyncio.timeout(30):
            while True:
                reply = json.loads(await peer.ws.recv())
                if reply.get("id") == sentinel:
                    break
                if reply.get("type") == "error":
                    errors.append(reply)
    return must, errors


async def test_live_signaling_fuzz_10k_frames(live: SignalingServer) -> None:
    fuzz = await make_room(live, "fuzz")
    ctl = await make_room(live, "ctl")
    # the control pair lives in another room: a worker and a client that must keep working
    worker = SignalingClient(live.url, token=ctl["worker"], reconnect=False)
    client = SignalingClient(live.url, token=ctl["client"], name="ctl-client", reconnect=False)
    await worker.connect()
    await client.connect()
    await worker.register_worker(caps("ctl-gpu", slots=4))

    rng = random.Random(8)
    real = real_signaling_frames()
    frames: list[str | bytes] = [*generated_frames(1500)]
    frames += [mutated_signaling_frame(rng, real) for _ in range(9000)]
    big = live.config.max_frame_bytes
    frames += ['{"type":"heartbeat","id":"big","pad":"' + "x" * big + '"}'] * 5  # > limit
    rng.shuffle(frames)
    assert len(frames) >= 10_000

    peers = [await open_raw(live)]  # unauthenticated
    for role in ("client", "worker", "admin"):
        peers.append(await open_raw(live, fuzz[role], name=f"fuzz-{role}")
                     if role != "worker" else await open_raw(live, fuzz[role]))
    server_admin = await open_raw(live)
    await server_admin.ask({"type": "hello", "id": "h", "admin_secret": ADMIN_SECRET})
    peers.append(server_admin)
    share = len(frames) // len(peers) + 1

    served = 0

    async def control_loop(stop: asyncio.Event) -> None:
        nonlocal served
        while not stop.is_set():
            assert [w["name"] for w in await client.list_workers()] == ["ctl-gpu"]
            served += 1
            await asyncio.sleep(0.05)

    stop = asyncio.Event()
    control = asyncio.create_task(control_loop(stop))
    results = await asyncio.gather(*(
        barrage(peer, frames[i * share:(i + 1) * share], big, f"p{i}")
        for i, peer in enumerate(peers)))
    stop.set()
    await control
    assert served >= 1  # the control client was answered while the barrage ran

    total_must = 0
    for must, errors in results:
        got = Counter((e["code"], e.get("id")) for e in errors)
        missing = must - got
        assert not missing, f"frames not answered with their error: {list(missing.items())[:5]}"
        total_must += sum(must.values())
        for e in errors:
            assert e["code"] in KNOWN_CODES and e["code"] != Codes.INTERNAL_ERROR, e
            assert isinstance(e["message"], str) and e["message"] and "hint" in e
    assert total_must > 5_000  # most frames really were bad
    assert live.hub.metrics.errors[Codes.INTERNAL_ERROR] == 0

    # every fuzzing connection is still open and served
    for peer in peers:
        assert (await peer.ask({"type": "heartbeat", "id": "alive"}))["type"] in (
            "heartbeat_ack", "error")
    # and the control pair still routes and relays
    routed = await client.route(pipelines=["scenes"])
    started = await worker.next_event("session_started", timeout=5)
    assert started["session_id"] == routed["session_id"]
    await client.send_signal(routed["session_id"], {"kind": "offer", "sdp": "v=0"})
    relayed = await worker.next_signal(routed["session_id"], timeout=5)
    assert relayed["sdp"] == "v=0"
    for peer in peers:
        await peer.close()
    await client.close()
    await worker.close()


async def test_abusive_frames_close_only_that_connection(tmp_path: Path) -> None:
    """Frames over 4x the limit close with 1009, invalid UTF-8 in a text frame with 1007;
    binary frames are answered MALFORMED_FRAME; other peers are not disturbed."""
    srv = await start_server(tmp_path / "s.sqlite3")
    try:
        bystander = await open_raw(srv)
        await bystander.ask({"type": "hello", "id": "h", "admin_secret": ADMIN_SECRET})

        huge = await open_raw(srv)
        await huge.ws.send("x" * (srv.config.max_frame_bytes * 4 + 10))
        await asyncio.wait_for(huge.ws.wait_closed(), 5)
        assert huge.ws.close_code == 1009

        bad_utf8 = Raw(await ws_connect(srv.url, ping_interval=None))
        await bad_utf8.ws.send(b'{"type": "heartbeat", "id": "\xff\xfe"}', text=True)
        await asyncio.wait_for(bad_utf8.ws.wait_closed(), 5)
        assert bad_utf8.ws.close_code == 1007

        binary = await open_raw(srv)
        await binary.ws.send(b"\xff\x00\x81 binary")
        reply = await binary.recv()
        assert (reply["type"], reply["code"]) == ("error", Codes.MALFORMED_FRAME)
        assert (await binary.ask({"type": "hello", "id": "h", "admin_secret": ADMIN_SECRET})
                )["type"] == "welcome"  # the connection stays usable

        assert (await bystander.ask({"type": "heartbeat", "id": "b"}))["type"] == "heartbeat_ack"
        assert srv.hub.metrics.errors[Codes.INTERNAL_ERROR] == 0
        await binary.close()
        await bystander.close()
    finally:
        await srv.stop()


# --------------------------------------------------------------------------- pure fuzz

@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signaling_frames())
def test_decoder_fuzz_shaped_frames(frame: str) -> None:
    try:
        msg = decode_request(frame)
    except FrameError as exc:
        assert exc.code in KNOWN_CODES and exc.message and exc.hint
        if exc.request_id is not None:
            assert 0 < len(exc.request_id) <= 64
    else:
        assert msg.type in json.loads(frame)["type"]  # type: ignore[attr-defined]


@settings(max_examples=3000, deadline=None)
@given(st.randoms(use_true_random=False))
def test_decoder_fuzz_mutated_real_frames(rnd: random.Random) -> None:
    frame = mutated_signaling_frame(rnd, real_signaling_frames())
    try:
        decode_request(frame)
    except FrameError as exc:
        assert exc.code in KNOWN_CODES


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_decoder_fuzz_raw_bytes_and_text(frame: str | bytes) -> None:
    try:
        decode_request(frame)
    except FrameError as exc:
        assert exc.code in KNOWN_CODES
