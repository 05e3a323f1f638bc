"""Identities are bound to the token that claimed them (docs/security.md, "Identities").

The same token may come back and replaces its old connection (taking its sessions back); a
different token is refused with IDENTITY_IN_USE while the identity is live or absent within
its grace, and the holder is not disturbed; once the identity is gone, any token may claim it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

from rtc_annotator.protocol.signaling import Codes
from signaling.app import SignalingServer
from signaling.hub import ConnState
from tests.signaling.conftest import caps, server_config
from tests.signaling.test_faults import Raw
from tests.signaling.test_flow import _until

GRACE_S = 1.5


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SignalingServer]:
    """The suite's server, with a session grace long enough to act inside it reliably (and
    liveness timers long enough for bare peers that send no heartbeats)."""
    srv = SignalingServer(server_config(tmp_path / "state.sqlite3", session_grace_s=GRACE_S,
                                        gone_after_s=5.0, hello_timeout_s=10.0))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def connect(server: SignalingServer) -> Raw:
    return Raw(await ws_connect(server.url, ping_interval=None))


async def hello(server: SignalingServer, token: str, name: str | None = None) -> Raw:
    """A bare peer that said hello successfully."""
    peer = await connect(server)
    frame: dict[str, Any] = {"type": "hello", "id": "h", "token": token}
    if name is not None:
        frame["name"] = name
    welcome = await peer.ask(frame)
    assert welcome["type"] == "welcome", welcome
    return peer


async def worker(server: SignalingServer, token: str, name: str, slots: int = 1) -> Raw:
    peer = await hello(server, token)
    reg = await peer.ask({"type": "register", "id": "r", "capabilities": caps(name, slots=slots)})
    assert reg["type"] == "registered", reg
    return peer


async def second_token(server: SignalingServer, admin_token: str, role: str) -> str:
    admin = await hello(server, admin_token, name=f"issuer-{role}")
    reply = await admin.ask({"type": "issue_token", "id": "t", "role": role, "ttl_s": 600})
    await admin.ws.close()
    token: str = reply["token"]
    return token


async def nothing_arrives(peer: Raw, wait_s: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await peer.recv(wait_s)


async def paired(server: SignalingServer, t: dict[str, str], client_name: str = "laptop",
                 worker_name: str = "gpu-a") -> tuple[Raw, Raw, str]:
    """A registered worker and a named client paired in one session: (worker, client, sid)."""
    w = await worker(server, t["worker"], worker_name)
    c = await hello(server, t["client"], name=client_name)
    routed = await c.ask({"type": "route", "id": "q", "pipelines": ["scenes"]})
    assert routed["type"] == "routed", routed
    started = await w.recv()
    assert started["type"] == "session_started"
    assert started["client"] == f"client:{client_name}"
    return w, c, routed["session_id"]


async def relayed(sender: Raw, receiver: Raw, sid: str, sdp: str) -> dict[str, Any]:
    ok = await sender.ask({"type": "signal", "id": "s", "session_id": sid,
                           "data": {"kind": "offer", "sdp": sdp}})
    assert ok["type"] == "ok", ok
    frame = await receiver.recv()
    assert frame["type"] == "signal" and frame["data"]["sdp"] == sdp, frame
    return frame


async def test_same_token_reconnect_replaces_and_takes_back_sessions(
        server: SignalingServer, room: Any) -> None:
    t = await room("lab")
    w, old, sid = await paired(server, t)
    new = await hello(server, t["client"], name="laptop")  # same token, same name
    note = await old.recv()
    assert note["type"] == "error" and note["code"] == Codes.REPLACED
    await asyncio.wait_for(old.ws.wait_closed(), 5)
    assert old.ws.close_code == 4001
    assert (await relayed(new, w, sid, "from-new"))["from"] == "client:laptop"
    # gone and back within the grace, still with the same token: the session is its own again
    await new.ws.close()
    await _until(lambda: ("lab", "client:laptop") in server.hub.absent)
    back = await hello(server, t["client"], name="laptop")
    await relayed(back, w, sid, "from-back")
    await relayed(w, back, sid, "to-back")
    # a worker restarted with its token registers again and gets its reservation back
    await w.ws.close()
    await _until(lambda: ("lab", "worker:gpu-a") in server.hub.absent)
    w2 = await hello(server, t["worker"])
    reg = await w2.ask({"type": "register", "id": "r", "capabilities": caps("gpu-a")})
    assert reg["type"] == "registered" and reg["sessions"] == [sid]
    await relayed(back, w2, sid, "to-restarted-worker")
    for peer in (w2, back):
        await peer.ws.close()


@pytest.mark.parametrize("role", ["client", "admin"])
async def test_other_token_same_name_refused_holder_undisturbed(
        server: SignalingServer, room: Any, role: str,
        caplog: pytest.LogCaptureFixture) -> None:
    t = await room("lab")
    other_token = await second_token(server, t["admin"], role)
    holder = await hello(server, t[role], name="laptop")
    holder_conn = server.hub.by_identity[("lab", f"{role}:laptop")]
    w = await worker(server, t["worker"], "gpu-a")
    routed = await holder.ask({"type": "route", "id": "q", "pipelines": ["scenes"]})
    sid = routed["session_id"]
    assert (await w.recv())["type"] == "session_started"

    thief = await connect(server)
    with caplog.at_level(logging.INFO, logger="signaling.hub"):
        refused = await thief.ask({"type": "hello", "id": "h", "token": other_token,
                                   "name": "laptop"})
    assert refused["type"] == "error" and refused["code"] == Codes.IDENTITY_IN_USE
    assert f"{role}:laptop" in refused["message"]
    assert "another name" in refused["hint"] and "revoke" in refused["hint"]
    # logged with the identity and both connection ids, never a token
    thief_conn = next(c for c in server.hub.conns if c.state is ConnState.OPEN)
    records = [r for r in caplog.records if "identity in use" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    lines = [records[0].getMessage()]
    assert f"identity={role}:laptop" in lines[0]
    assert f"conn={thief_conn.id}" in lines[0] and f"holder_conn={holder_conn.id}" in lines[0]
    assert not any(tok.split(".")[2] in r.getMessage() for r in caplog.records
                   for tok in (t[role], other_token))

    # the refused connection is still unauthenticated; another name works on it
    assert (await thief.ask({"type": "list_workers", "id": "l"}))["code"] == \
        Codes.NOT_AUTHENTICATED
    renamed = await thief.ask({"type": "hello", "id": "h2", "token": other_token,
                               "name": "laptop-2"})
    assert renamed["type"] == "welcome" and renamed["identity"] == f"{role}:laptop-2"

    # the holder got nothing, is still bound, and its session still works both ways
    await nothing_arrives(holder)
    assert server.hub.by_identity[("lab", f"{role}:laptop")] is holder_conn
    listed = await holder.ask({"type": "list_workers", "id": "l"})
    assert [x["name"] for x in listed["workers"]] == ["gpu-a"]
    assert (await relayed(holder, w, sid, "still-mine"))["from"] == f"{role}:laptop"
    await relayed(w, holder, sid, "reply")
    await nothing_arrives(thief)  # the thief received none of the session's traffic
    for peer in (w, holder, thief):
        await peer.ws.close()


async def test_name_held_through_grace_then_free_for_any_token(
        server: SignalingServer, room: Any) -> None:
    t = await room("lab")
    other = await second_token(server, t["admin"], "client")
    # without sessions the name is free as soon as the connection is gone
    solo = await hello(server, t["client"], name="solo")
    probe = await connect(server)
    assert (await probe.ask({"type": "hello", "id": "h", "token": other, "name": "solo"})
            )["code"] == Codes.IDENTITY_IN_USE
    await solo.ws.close()
    await _until(lambda: ("lab", "client:solo") not in server.hub.by_identity)
    taken = await probe.ask({"type": "hello", "id": "h2", "token": other, "name": "solo"})
    assert taken["type"] == "welcome" and taken["identity"] == "client:solo"
    await probe.ws.close()

    # with a session it stays held (by its token) for the grace period, then is forgotten
    w, c, sid = await paired(server, t)
    await c.ws.close()
    await _until(lambda: ("lab", "client:laptop") in server.hub.absent)
    early = await connect(server)
    refused = await early.ask({"type": "hello", "id": "h", "token": other, "name": "laptop"})
    assert refused["code"] == Codes.IDENTITY_IN_USE
    ended = await w.recv(wait_s=GRACE_S + 3)
    assert ended["type"] == "session_ended" and ended["session_id"] == sid
    assert ended["reason"] == "client:laptop gone"
    late = await early.ask({"type": "hello", "id": "h2", "token": other, "name": "laptop"})
    assert late["type"] == "welcome" and late["identity"] == "client:laptop"
    # the newcomer inherits nothing of the old session
    sig = await early.ask({"type": "signal", "id": "s", "session_id": sid,
                           "data": {"kind": "offer", "sdp": "x"}})
    assert sig["code"] == Codes.SESSION_NOT_FOUND
    for peer in (w, early):
        await peer.ws.close()


async def test_worker_with_other_token_cannot_steal_sessions(
        server: SignalingServer, room: Any) -> None:
    t = await room("lab")
    other = await second_token(server, t["admin"], "worker")
    w, c, sid = await paired(server, t)
    thief = await hello(server, other)
    refused = await thief.ask({"type": "register", "id": "r",
                               "capabilities": caps("gpu-a", slots=4)})
    assert refused["type"] == "error" and refused["code"] == Codes.IDENTITY_IN_USE
    assert "worker:gpu-a" in refused["message"] and "another worker name" in refused["hint"]
    assert (await thief.ask({"type": "load", "id": "l", "load": 0}))["code"] == \
        Codes.NOT_REGISTERED
    # the registration is the holder's, untouched, and the session still reaches it
    await nothing_arrives(w)
    listed = await c.ask({"type": "list_workers", "id": "l"})
    assert [(x["name"], x["job_slots"], x["sessions"]) for x in listed["workers"]] == \
        [("gpu-a", 1, 1)]
    assert (await relayed(c, w, sid, "to-real-worker"))["from"] == "client:laptop"
    await nothing_arrives(thief)

    # the holder vanishes; during its grace the thief still cannot take its sessions
    await w.ws.close()
    await _until(lambda: ("lab", "worker:gpu-a") in server.hub.absent)
    again = await thief.ask({"type": "register", "id": "r2", "capabilities": caps("gpu-a")})
    assert again["code"] == Codes.IDENTITY_IN_USE
    unavailable = await c.ask({"type": "signal", "id": "s2", "session_id": sid,
                               "data": {"kind": "offer", "sdp": "lost"}})
    assert unavailable["code"] == Codes.PEER_UNAVAILABLE
    await nothing_arrives(thief)
    # the real worker comes back with its own token and gets its reservation back
    back = await hello(server, t["worker"])
    reg = await back.ask({"type": "register", "id": "r", "capabilities": caps("gpu-a")})
    assert reg["type"] == "registered" and reg["sessions"] == [sid]
    await relayed(c, back, sid, "welcome-back")
    for peer in (back, c, thief):
        await peer.ws.close()


async def test_revoking_the_holder_frees_its_name_and_ends_its_sessions(
        server: SignalingServer, room: Any) -> None:
    t = await room("lab")
    other = await second_token(server, t["admin"], "worker")
    w, c, sid = await paired(server, t)
    admin = await hello(server, t["admin"], name="ops")
    reply = await admin.ask({"type": "revoke_token", "id": "v", "token_id": t["worker_id"]})
    assert reply["closed_connections"] == 1
    ended = await c.recv()  # at once, not after the grace
    assert ended["type"] == "session_ended" and ended["session_id"] == sid
    assert ended["reason"] == "worker:gpu-a token revoked"
    successor = await hello(server, other)
    reg = await successor.ask({"type": "register", "id": "r", "capabilities": caps("gpu-a")})
    assert reg["type"] == "registered" and reg["sessions"] == []
    for peer in (w, c, admin, successor):
        await peer.ws.close()
