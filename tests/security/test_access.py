"""Who may do what on the signaling server: every request type x every role, room isolation,
sender identity, a third peer that learned a session id, expired and revoked tokens, and
slow or stalled peers (slowloris) that must not stop the server serving others."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from rtc_annotator.protocol.signaling import REQUEST_TYPES, Codes
from signaling.app import SignalingServer
from signaling.tokens import issue

from .conftest import ADMIN_SECRET, RawFactory, caps, make_room, open_raw, start_server

ALL_ROOM = {"worker", "client", "admin"}
ALLOWED: dict[str, set[str]] = {  # docs/protocol.md, "Requests"
    "heartbeat": {*ALL_ROOM, "server"},
    "register": {"worker"},
    "load": {"worker"},
    "list_workers": ALL_ROOM,
    "route": {"client", "admin"},
    "cancel_route": {"client", "admin"},
    "signal": ALL_ROOM,
    "end_session": ALL_ROOM,
    "get_policy": ALL_ROOM,
    "set_policy": {"admin"},
    "drain": {"admin"},
    "decisions": {"admin"},
    "route_queue": {"admin"},
    "issue_token": {"admin"},
    "revoke_token": {"admin"},
    "create_room": {"server"},
}
EXAMPLES: dict[str, dict[str, Any]] = {
    "heartbeat": {},
    "register": {"capabilities": caps("table-gpu")},
    "load": {"load": 0},
    "list_workers": {},
    "route": {"pipelines": ["nothing-offers-this"]},
    "cancel_route": {"route_id": "nope"},
    "signal": {"session_id": "0123456789abcdef", "data": {"kind": "bye"}},
    "end_session": {"session_id": "0123456789abcdef"},
    "get_policy": {},
    "set_policy": {"policy": {"storage": "preferred"}},
    "drain": {"worker": "nobody", "drain": False},
    "decisions": {"limit": 1},
    "route_queue": {},
    "issue_token": {"role": "client", "ttl_s": 60},
    "revoke_token": {"token_id": "ffffffffffffffff"},
    "create_room": {"name": "made-by-table"},
}


def test_table_covers_every_request_type() -> None:
    assert set(ALLOWED) | {"hello"} == set(REQUEST_TYPES) == set(EXAMPLES) | {"hello"}


@pytest.mark.parametrize("role", ["worker", "client", "admin", "server"])
async def test_every_request_type_for_every_role(live: SignalingServer, raws: RawFactory,
                                                 role: str) -> None:
    tokens = await make_room(live, "lab")
    if role == "server":
        peer = await raws()
        await peer.ask({"type": "hello", "id": "h", "admin_secret": ADMIN_SECRET})
    else:
        peer = await raws(tokens[role])
    for n, (kind, fields) in enumerate(EXAMPLES.items()):
        reply = await peer.ask({"type": kind, "id": f"r{n}", **fields})
        forbidden = reply.get("code") == Codes.FORBIDDEN
        assert forbidden == (role not in ALLOWED[kind]), (role, kind, reply)
        if role in ALLOWED[kind]:  # allowed: answered, or refused for another stated reason
            assert reply["type"] != "error" or reply["code"] in {
                Codes.NO_MATCHING_WORKER, Codes.INVALID_MESSAGE, Codes.SESSION_NOT_FOUND,
                Codes.TOKEN_NOT_FOUND}, (role, kind, reply)
    again = await peer.ask({"type": "hello", "id": "again", "token": tokens["admin"]})
    assert again["code"] == Codes.ALREADY_AUTHENTICATED  # no role upgrade on a connection
    assert (await peer.ask({"type": "heartbeat", "id": "z"}))["type"] == "heartbeat_ack"


async def test_room_isolation_and_third_peer_cannot_inject(live: SignalingServer,
                                                           raws: RawFactory) -> None:
    a = await make_room(live, "room-a")
    b = await make_room(live, "room-b")
    worker_b = await raws(b["worker"])
    await worker_b.ask({"type": "register", "id": "r", "capabilities": caps("gpu-b")})
    client_b = await raws(b["client"], name="owner")
    routed = await client_b.ask({"type": "route", "id": "q", "pipelines": ["scenes"]})
    sid = routed["session_id"]
    started = await worker_b.recv()
    assert started["type"] == "session_started" and started["session_id"] == sid

    # room A (client and admin) sees nothing of B and cannot reach B's session
    for role in ("client", "admin"):
        peer_a = await raws(a[role], name=f"a-{role}")
        assert (await peer_a.ask({"type": "list_workers", "id": "l"}))["workers"] == []
        for frame in ({"type": "signal", "id": "s", "session_id": sid,
                       "data": {"kind": "offer", "sdp": "evil"}},
                      {"type": "end_session", "id": "e", "session_id": sid}):
            assert (await peer_a.ask(frame))["code"] == Codes.SESSION_NOT_FOUND
        assert (await peer_a.ask({"type": "route", "id": "x", "pipelines": ["scenes"]})
                )["code"] == Codes.NO_MATCHING_WORKER
        if role == "admin":
            assert (await peer_a.ask({"type": "drain", "id": "d", "worker": "gpu-b"})
                    )["online"] is False  # A's drain list is A's own: B's worker untouched
            assert (await peer_a.ask({"type": "revoke_token", "id": "v",
                                      "token_id": b["client_id"]}))["code"] == \
                Codes.TOKEN_NOT_FOUND
            decisions = await peer_a.ask({"type": "decisions", "id": "k", "limit": 100})
            assert all(d["worker"] != "gpu-b" for d in decisions["decisions"])

    # a third peer of the SAME room who learned the session id cannot inject into it
    for role in ("client", "admin", "worker"):
        intruder = await raws(b[role], name=f"intruder-{role}")
        for kind in ("offer", "answer", "candidate", "bye"):
            reply = await intruder.ask({"type": "signal", "id": "i", "session_id": sid,
                                        "from": "client:owner",
                                        "data": {"kind": kind, "sdp": "evil", "type": kind}})
            assert reply["code"] == Codes.SESSION_NOT_FOUND
        assert (await intruder.ask({"type": "end_session", "id": "e", "session_id": sid})
                )["code"] == Codes.SESSION_NOT_FOUND
    # the worker never received any of it; the real member's signal is stamped by the server
    ok = await client_b.ask({"type": "signal", "id": "s", "session_id": sid,
                             "from": "worker:gpu-b", "data": {"kind": "offer", "sdp": "real"}})
    assert ok["type"] == "ok"
    relayed = await worker_b.recv()
    assert relayed["type"] == "signal" and relayed["data"]["sdp"] == "real"
    assert relayed["from"] == started["client"] == "client:owner"
    with pytest.raises(TimeoutError):
        await worker_b.recv(wait_s=0.3)  # nothing else arrived
    assert len(live.hub.sessions) == 1


async def test_deeply_nested_signal_data_is_relayed_or_refused(live: SignalingServer,
                                                               raws: RawFactory) -> None:
    t = await make_room(live, "lab")
    worker = await raws(t["worker"])
    await worker.ask({"type": "register", "id": "r", "capabilities": caps("gpu")})
    client = await raws(t["client"])
    sid = (await client.ask({"type": "route", "id": "q", "pipelines": ["scenes"]}))["session_id"]
    await worker.recv()  # session_started
    for depth in (5, 50, 400, 900, 990):
        frame = ('{"type":"signal","id":"n","session_id":"' + sid
                 + '","data":{"kind":"candidate","x":' + "[" * depth + "]" * depth + "}}")
        await client.send(frame)
        reply = await client.recv()
        assert reply.get("code") != Codes.INTERNAL_ERROR, depth
        if depth <= 30:
            assert reply["type"] == "ok"
            assert (await worker.recv())["type"] == "signal"
        else:
            assert reply["code"] in (Codes.INVALID_MESSAGE, Codes.MALFORMED_FRAME), reply
            assert reply["code"] == Codes.MALFORMED_FRAME or "nested" in reply["message"]
    assert live.hub.metrics.errors[Codes.INTERNAL_ERROR] == 0


async def test_expired_forged_and_revoked_tokens(live: SignalingServer) -> None:
    t = await make_room(live, "lab")
    key = live.store.signing_key
    expired, _ = issue(key, room="lab", role="admin", ttl_s=-1)
    forged, _ = issue(os.urandom(32), room="lab", role="admin", ttl_s=60)
    other_room, _ = issue(key, room="no-such-room", role="admin", ttl_s=60)
    body, sig = t["client"].split(".")[1:]
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["role"] = "admin"  # privilege escalation by editing the claims
    edited = "rtca1." + base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip(
        "=") + "." + sig
    cases = [(expired, Codes.TOKEN_EXPIRED), (forged, Codes.TOKEN_INVALID),
             (edited, Codes.TOKEN_INVALID), (other_room, Codes.ROOM_NOT_FOUND),
             ("rtca1..", Codes.TOKEN_INVALID), ("x" * 4096, Codes.TOKEN_INVALID)]
    for token, code in cases:
        peer = await open_raw(live)
        reply = await peer.ask({"type": "hello", "id": "h", "token": token})
        assert reply["code"] == code, (token[:20], reply)
        # still unauthenticated afterwards
        assert (await peer.ask({"type": "list_workers", "id": "l"}))["code"] == \
            Codes.NOT_AUTHENTICATED
        await peer.close()
    # revoke: open connections with the token are closed (4003), new hellos refused
    victim = await open_raw(live, t["client"])
    admin = await open_raw(live, t["admin"])
    assert (await admin.ask({"type": "revoke_token", "id": "v", "token_id": t["client_id"]})
            )["closed_connections"] == 1
    event = await victim.recv()
    assert event["code"] == Codes.TOKEN_REVOKED
    await asyncio.wait_for(victim.ws.wait_closed(), 5)
    assert victim.ws.close_code == 4003
    again = await open_raw(live)
    assert (await again.ask({"type": "hello", "id": "h", "token": t["client"]}))["code"] == \
        Codes.TOKEN_REVOKED
    for peer in (admin, again):
        await peer.close()


# --------------------------------------------------------------------------- slow peers

async def _raw_ws_handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


def _masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    assert len(payload) < 65536
    head = (bytes([0x81, 0x80 | len(payload)]) if len(payload) < 126
            else bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(payload)))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _close_code(reader: asyncio.StreamReader) -> int:
    """Read server frames until a close frame; return its code."""
    while True:
        b0, b1 = await reader.readexactly(2)
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack(">H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", await reader.readexactly(8))[0]
        payload = await reader.readexactly(length)
        if b0 & 0x0F == 0x8:
            return int(struct.unpack(">H", payload[:2])[0])


async def test_slowloris_peers_do_not_stop_the_server(tmp_path: Path) -> None:
    srv = await start_server(tmp_path / "s.sqlite3", hello_timeout_s=0.6)
    sockets: list[socket.socket] = []
    try:
        # 20 websockets that never say hello, 20 TCP sockets stuck mid HTTP handshake,
        # one peer dribbling its hello one byte every 50 ms
        silent = [await open_raw(srv) for _ in range(20)]
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: web")
            sockets.append(s)
        reader, writer = await _raw_ws_handshake(srv.port)
        frame = _masked_text_frame(json.dumps({"type": "hello", "id": "h",
                                               "admin_secret": ADMIN_SECRET}))

        async def dribble() -> None:
            for i in range(len(frame)):
                writer.write(frame[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.05)

        dribbler = asyncio.create_task(dribble())
        # meanwhile a normal peer is served at once, again and again
        ok = await open_raw(srv)
        assert (await ok.ask({"type": "hello", "id": "h", "admin_secret": ADMIN_SECRET})
                )["type"] == "welcome"
        for i in range(10):
            reply = await ok.ask({"type": "heartbeat", "id": f"b{i}"}, wait_s=1.0)
            assert reply["type"] == "heartbeat_ack"
            await asyncio.sleep(0.05)
        # the silent ones and the dribbler are closed with 4002 (no hello in time)
        for peer in silent:
            await asyncio.wait_for(peer.ws.wait_closed(), 5)
            assert peer.ws.close_code == 4002
        assert await asyncio.wait_for(_close_code(reader), 5) == 4002
        dribbler.cancel()
        writer.close()
        assert (await ok.ask({"type": "heartbeat", "id": "last"}))["type"] == "heartbeat_ack"
        await ok.close()
    finally:
        for s in sockets:
            s.close()
        await srv.stop()


async def test_peer_that_never_reads_is_closed_4004(tmp_path: Path) -> None:
    srv = await start_server(tmp_path / "s.sqlite3", max_outbox=20, rate_per_s=1e6,
                             rate_burst=1e6, gone_after_s=30.0)
    try:
        rooms = await make_room(srv, "lab")
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        await reader.readuntil(b"\r\n\r\n")
        hello = json.dumps({"type": "hello", "id": "h", "token": rooms["admin"]})
        writer.write(_masked_text_frame(hello))
        ask = _masked_text_frame(json.dumps({"type": "decisions", "id": "d", "limit": 1000}))
        bystander = await open_raw(srv, rooms["client"])
        # flood requests, never read a reply: the server's outbox for us overflows
        closed = False
        for _ in range(400):
            writer.write(ask * 50)
            await writer.drain()
            await asyncio.sleep(0)
            if len(srv.hub.conns) == 1:  # only the bystander is left
                closed = True
                break
        assert closed, "the slow reader was never disconnected"
        assert (await bystander.ask({"type": "heartbeat", "id": "b"}))["type"] == "heartbeat_ack"
        # what the server last sent is a close frame with 4004
        assert await asyncio.wait_for(_close_code(reader), 10) == 4004
        writer.close()
        await bystander.close()
    finally:
        await srv.stop()
