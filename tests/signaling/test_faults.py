"""Failures: vanishing workers, reconnects, restarts, isolation, spoofing, bad tokens/frames."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect as ws_connect

from rtc_annotator.protocol.signaling import SignalingError
from rtc_annotator.signaling_client import SignalingClient
from signaling.app import SignalingServer
from signaling.tokens import issue
from tests.signaling.conftest import ADMIN_SECRET, caps, server_config
from tests.signaling.test_flow import _until


class Raw:
    """A bare websocket peer speaking JSON frames by hand."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, wait_s: float = 5.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), wait_s))

    async def ask(self, frame: dict[str, Any]) -> dict[str, Any]:
        await self.send(frame)
        while True:
            reply = await self.recv()
            if reply.get("id") == frame.get("id"):
                return reply


async def raw(server: SignalingServer, token: str | None = None) -> Raw:
    peer = Raw(await ws_connect(server.url, ping_interval=None))
    if token is not None:
        welcome = await peer.ask({"type": "hello", "id": "h", "token": token})
        assert welcome["type"] == "welcome", welcome
    return peer


async def test_worker_vanishing_mid_session_ends_it(server: SignalingServer, room: Any,
                                                    make_client: Any) -> None:
    t = await room("lab")
    peer = await raw(server, t["worker"])
    reg = await peer.ask({"type": "register", "id": "r", "capabilities": caps("ghost")})
    assert reg["type"] == "registered"
    client = await make_client(token=t["client"])
    routed = await client.route(pipelines=["scenes"])
    # the worker goes silent (no heartbeats, no close): gone after gone_after_s
    await _until(lambda: server.hub.registry.count() == 0, within=5)
    assert await client.list_workers() == []
    bye = await client.next_signal(routed["session_id"], timeout=5)
    assert bye["ended"] is True and "worker:ghost gone" in bye["reason"]
    await peer.ws.close()


async def test_worker_reconnect_reregisters_and_keeps_session(server: SignalingServer,
                                                             room: Any, make_client: Any) -> None:
    t = await room("lab")
    reconnected = asyncio.Event()

    async def hook(_: SignalingClient) -> None:
        reconnected.set()

    worker = await make_client(token=t["worker"], on_reconnect=hook)
    await worker.register_worker(caps("gpu-a", slots=2))
    client = await make_client(token=t["client"])
    routed = await client.route(pipelines=["scenes"])
    await worker.drop_connection()
    await asyncio.wait_for(reconnected.wait(), 5)
    workers = await client.list_workers()
    assert [w["name"] for w in workers] == ["gpu-a"]
    assert workers[0]["sessions"] == 1  # the reservation survived the reconnect
    await client.send_signal(routed["session_id"], {"kind": "offer", "sdp": "x"})
    assert (await worker.next_signal(routed["session_id"], timeout=5))["sdp"] == "x"


async def test_reregistration_replaces_old_connection(server: SignalingServer, room: Any,
                                                      make_client: Any) -> None:
    t = await room("lab")
    old = await raw(server, t["worker"])
    await old.ask({"type": "register", "id": "r", "capabilities": caps("gpu-a")})
    new = await make_client(token=t["worker"])
    await new.register_worker(caps("gpu-a", slots=3))
    note = await old.recv()
    assert note["code"] == "REPLACED"
    client = await make_client(token=t["client"])
    workers = await client.list_workers()
    assert len(workers) == 1 and workers[0]["job_slots"] == 3
    await old.ws.close()
    await asyncio.sleep(0.1)
    assert len(await client.list_workers()) == 1  # the old close leaves no hole and no ghost


async def test_restart_keeps_rooms_policy_revocations(tmp_path: Path) -> None:
    cfg = server_config(tmp_path / "state.sqlite3")
    srv = SignalingServer(cfg)
    await srv.start()
    root = SignalingClient(srv.url, admin_secret=ADMIN_SECRET, reconnect_min_s=0.05,
                           reconnect_max_s=0.1)
    await root.connect()
    created = await root.request("create_room", name="lab")
    admin = SignalingClient(srv.url, token=created["token"], reconnect_min_s=0.05,
                            reconnect_max_s=0.1)
    await admin.connect()
    await admin.request("set_policy", policy={"storage": "strict", "strict_backends": ["vast"]})
    revoked = await admin.request("issue_token", role="client")
    kept = await admin.request("issue_token", role="worker")
    await admin.request("revoke_token", token_id=revoked["token_id"])
    await admin.request("drain", worker="gpu-a", drain=True)
    first_connections = admin.connections
    await srv.stop()
    srv2 = SignalingServer(server_config(tmp_path / "state.sqlite3", port=srv.port))
    await srv2.start()
    try:
        await _until(lambda: admin.connections > first_connections)  # reconnected by itself
        policy = await admin.request("get_policy")
        assert policy["policy"]["storage"] == "strict"
        worker = SignalingClient(srv2.url, token=kept["token"], reconnect=False)
        await worker.connect()
        await worker.register_worker(caps("gpu-a"))
        listed = await admin.list_workers()
        assert listed[0]["draining"] is True
        await worker.close()
        refused = SignalingClient(srv2.url, token=revoked["token"], reconnect=False)
        with pytest.raises(SignalingError) as err:
            await refused.connect()
        assert err.value.code == "TOKEN_REVOKED"
        await refused.close()
    finally:
        await admin.close()
        await root.close()
        await srv2.stop()


async def test_cross_room_isolation(server: SignalingServer, room: Any,
                                    make_client: Any) -> None:
    a = await room("lab-a")
    b = await room("lab-b")
    wb = await make_client(token=b["worker"])
    await wb.register_worker(caps("gpu-b"))
    ca = await make_client(token=a["client"])
    assert await ca.list_workers() == []
    with pytest.raises(SignalingError) as err:
        await ca.route(pipelines=["scenes"])
    assert err.value.code == "NO_MATCHING_WORKER"
    cb = await make_client(token=b["client"])
    routed = await cb.route(pipelines=["scenes"])
    with pytest.raises(SignalingError) as err:  # room A cannot reach B's session
        await ca.send_signal(routed["session_id"], {"kind": "offer", "sdp": "evil"})
    assert err.value.code == "SESSION_NOT_FOUND"
    with pytest.raises(SignalingError):
        await ca.end_session(routed["session_id"])
    admin_a = await make_client(token=a["admin"])
    with pytest.raises(SignalingError) as err:  # nor revoke B's tokens
        await admin_a.request("revoke_token", token_id=b["worker_id"])
    assert err.value.code == "TOKEN_NOT_FOUND"
    assert [w["name"] for w in await cb.list_workers()] == ["gpu-b"]


async def test_spoofed_sender_is_overwritten(server: SignalingServer, room: Any,
                                             make_client: Any) -> None:
    t = await room("lab")
    worker = await raw(server, t["worker"])
    await worker.ask({"type": "register", "id": "r", "capabilities": caps("gpu-a")})
    client = await raw(server, t["client"])
    await client.send({"type": "hello", "id": "x", "token": t["client"]})
    assert (await client.recv())["code"] == "ALREADY_AUTHENTICATED"
    routed = await client.ask({"type": "route", "id": "q", "pipelines": ["scenes"]})
    sid = routed["session_id"]
    started = await worker.recv()
    assert started["type"] == "session_started"
    ok = await client.ask({"type": "signal", "id": "s", "session_id": sid,
                           "from": "worker:gpu-a", "data": {"kind": "offer", "sdp": "o"}})
    assert ok["type"] == "ok"
    relayed = await worker.recv()
    assert relayed["from"] == started["client"] and relayed["from"].startswith("client:")
    # a third peer of the same room that is not a member cannot inject into the session
    intruder = await raw(server, t["client"])
    refused = await intruder.ask({"type": "signal", "id": "i", "session_id": sid,
                                  "data": {"kind": "candidate", "candidate": "evil"}})
    assert refused["code"] == "SESSION_NOT_FOUND"
    for peer in (worker, client, intruder):
        await peer.ws.close()


async def test_expired_revoked_and_forged_tokens_refused(server: SignalingServer, room: Any,
                                                         make_client: Any) -> None:
    t = await room("lab")
    expired, _ = issue(server.store.signing_key, room="lab", role="client", ttl_s=-1)
    forged, _ = issue(b"not-the-key", room="lab", role="admin", ttl_s=60)
    for token, code in ((expired, "TOKEN_EXPIRED"), (forged, "TOKEN_INVALID"),
                        ("garbage", "TOKEN_INVALID")):
        c = SignalingClient(server.url, token=token, reconnect=False)
        with pytest.raises(SignalingError) as err:
            await c.connect()
        assert err.value.code == code
        await c.close()
    # revoking closes open connections using the token
    victim = await make_client(token=t["client"], reconnect=False)
    admin = await make_client(token=t["admin"])
    reply = await admin.request("revoke_token", token_id=t["client_id"])
    assert reply["closed_connections"] == 1
    event = await victim.next_event("error", timeout=5)
    assert event["code"] == "TOKEN_REVOKED"
    # and roles are enforced
    client = await make_client(token=t["worker"])
    with pytest.raises(SignalingError) as err:
        await client.request("issue_token", role="admin")
    assert err.value.code == "FORBIDDEN"


async def test_bad_frames_answered_and_server_keeps_serving(server: SignalingServer,
                                                            room: Any) -> None:
    t = await room("lab")
    peer = await raw(server)
    await peer.send({"type": "list_workers", "id": "early"})
    assert (await peer.recv())["code"] == "NOT_AUTHENTICATED"
    await peer.ask({"type": "hello", "id": "h", "token": t["client"]})
    cases: list[tuple[Any, str]] = [
        ("not json", "MALFORMED_FRAME"),
        ("[1, 2]", "MALFORMED_FRAME"),
        ({"id": "n"}, "MALFORMED_FRAME"),
        ({"type": "teleport", "id": "u"}, "UNKNOWN_TYPE"),
        ({"type": "route", "id": "v", "pipelines": "scenes"}, "INVALID_MESSAGE"),
        ({"type": "signal", "session_id": "s", "data": {"kind": "telepathy"}},
         "INVALID_MESSAGE"),
        ("x" * (server.config.max_frame_bytes + 1), "FRAME_TOO_LARGE"),
        ({"type": "register", "id": "w", "capabilities": caps("c")}, "FORBIDDEN"),
    ]
    for frame, code in cases:
        await peer.send(frame)
        reply = await peer.recv()
        assert reply["type"] == "error" and reply["code"] == code, (frame, reply)
        assert reply["message"] and "hint" in reply
    await peer.ws.send(b"\x00binary")
    assert (await peer.recv())["code"] == "MALFORMED_FRAME"
    invalid = await peer.ask({"type": "route", "id": "v2", "pipelines": 3})
    assert invalid["id"] == "v2"  # id echoed even for invalid requests
    alive = await peer.ask({"type": "heartbeat", "id": "hb"})
    assert alive["type"] == "heartbeat_ack"
    await peer.ws.close()


async def test_rate_limit_per_connection(tmp_path: Path) -> None:
    srv = SignalingServer(server_config(tmp_path / "s.sqlite3", rate_per_s=1.0, rate_burst=5.0))
    await srv.start()
    try:
        peer = await raw(srv)
        await peer.send({"type": "hello", "id": "h", "admin_secret": ADMIN_SECRET})
        codes = []
        for i in range(10):
            await peer.send({"type": "heartbeat", "id": f"b{i}"})
        for _ in range(11):
            frame = await peer.recv()
            codes.append(frame.get("code", frame["type"]))
        assert codes.count("RATE_LIMITED") >= 5
        other = await raw(srv)  # other connections are not affected
        await other.ask({"type": "hello", "id": "h", "admin_secret": ADMIN_SECRET})
        assert (await other.ask({"type": "heartbeat", "id": "z"}))["type"] == "heartbeat_ack"
        await peer.ws.close()
        await other.ws.close()
    finally:
        await srv.stop()


async def test_graceful_shutdown_tells_peers(tmp_path: Path) -> None:
    srv = SignalingServer(server_config(tmp_path / "s.sqlite3"))
    await srv.start()
    peer = await raw(srv)
    await peer.ask({"type": "hello", "id": "h", "admin_secret": ADMIN_SECRET})
    await srv.stop()
    frame = await peer.recv()
    assert frame["type"] == "reconnect" and frame["retry_after_s"] > 0
    await asyncio.wait_for(peer.ws.wait_closed(), 5)
    assert peer.ws.close_code == 1012


async def test_healthz_and_metrics(server: SignalingServer, room: Any,
                                   make_client: Any) -> None:
    t = await room("lab")
    w = await make_client(token=t["worker"])
    await w.register_worker(caps("gpu-a"))
    c = await make_client(token=t["client"])
    await c.route(pipelines=["scenes"])
    async with aiohttp.ClientSession() as http:
        async with http.get(server.http_url + "/healthz") as r:
            body = await r.json()
            assert r.status == 200 and body["status"] == "ok" and body["workers"] == 1
        async with http.get(server.http_url + "/metrics") as r:
            text = await r.text()
    assert "signaling_workers 1" in text
    assert 'signaling_routes_total{outcome="routed"} 1' in text
    assert "signaling_route_latency_ms_count 1" in text
    assert "signaling_queue_length 0" in text


async def test_admin_policy_drain_and_decisions(server: SignalingServer, room: Any,
                                                make_client: Any) -> None:
    t = await room("lab")
    admin = await make_client(token=t["admin"])
    w1 = await make_client(token=t["worker"])
    await w1.register_worker(caps("gpu-nfs", backends=("nfs",), slots=4))
    client = await make_client(token=t["client"])
    await admin.request("set_policy", policy={"strict_backends": ["vast"]})
    with pytest.raises(SignalingError, match="vast"):  # vast is strict for this room
        await client.route(pipelines=["scenes"], required_storage="vast")
    r = await client.route(pipelines=["scenes"], required_storage="lustre")  # preferred
    assert r["worker"] == "gpu-nfs"
    await admin.request("drain", worker="gpu-nfs", drain=True)
    positions: list[int] = []
    task = asyncio.create_task(client.route(pipelines=["scenes"],
                                            on_queue=lambda f: positions.append(f["position"])))
    await _until(lambda: positions == [1])
    await admin.request("drain", worker="gpu-nfs", drain=False)
    await asyncio.wait_for(task, 5)
    decisions = (await admin.request("decisions", limit=10))["decisions"]
    assert [d["outcome"] for d in decisions] == ["rejected", "routed", "queued", "routed"]
    assert decisions[1]["storage_match"] is False and decisions[1]["worker"] == "gpu-nfs"


async def test_cancel_route_and_queue_dropped_on_disconnect(server: SignalingServer, room: Any,
                                                            make_client: Any) -> None:
    t = await room("lab")
    worker = await make_client(token=t["worker"])
    await worker.register_worker(caps("gpu-a"))
    c1 = await make_client(token=t["client"])
    await c1.route(pipelines=["scenes"])
    waiting = await raw(server, t["client"])
    await waiting.send({"type": "route", "id": "r1", "pipelines": ["scenes"]})
    assert (await waiting.recv()) == {"type": "queued", "id": "r1", "position": 1}
    await waiting.send({"type": "cancel_route", "id": "c", "route_id": "r1"})
    cancelled = await waiting.recv()
    assert cancelled["id"] == "r1" and cancelled["code"] == "ROUTE_CANCELLED"
    assert (await waiting.recv())["type"] == "ok"
    await waiting.send({"type": "route", "id": "r2", "pipelines": ["scenes"]})
    assert (await waiting.recv())["position"] == 1
    other: list[int] = []
    task = asyncio.create_task(c1.route(pipelines=["scenes"],
                                        on_queue=lambda f: other.append(f["position"])))
    await _until(lambda: other == [2])
    await waiting.ws.close()  # its queued request goes away; the next one moves up
    await _until(lambda: other == [2, 1])
    task.cancel()


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def test_tls(tmp_path: Path, self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    srv = SignalingServer(server_config(tmp_path / "s.sqlite3", cert=cert, key=key))
    await srv.start()
    try:
        assert srv.url.startswith("wss://")
        ctx = ssl.create_default_context(cafile=str(cert))
        client = SignalingClient(srv.url, admin_secret=ADMIN_SECRET, ssl_context=ctx,
                                 reconnect=False)
        welcome = await client.connect()
        assert welcome["role"] == "server"
        await client.close()
    finally:
        await srv.stop()


async def test_hello_timeout_closes_silent_socket(tmp_path: Path) -> None:
    srv = SignalingServer(server_config(tmp_path / "s.sqlite3", hello_timeout_s=0.2))
    await srv.start()
    try:
        peer = await raw(srv)
        await asyncio.wait_for(peer.ws.wait_closed(), 5)
        assert peer.ws.close_code == 4002
    finally:
        await srv.stop()


async def test_route_retry_with_same_id_gets_same_session(server: SignalingServer, room: Any,
                                                          make_client: Any) -> None:
    t = await room("lab")
    worker = await make_client(token=t["worker"])
    await worker.register_worker(caps("gpu-a", slots=2))
    first = await raw(server)
    await first.ask({"type": "hello", "id": "h", "token": t["client"], "name": "laptop"})
    routed = await first.ask({"type": "route", "id": "job-1", "pipelines": ["scenes"]})
    await first.ws.close()  # the reply "was lost": the client reconnects and retries
    again = await raw(server)
    await again.ask({"type": "hello", "id": "h", "token": t["client"], "name": "laptop"})
    retried = await again.ask({"type": "route", "id": "job-1", "pipelines": ["scenes"]})
    assert retried["session_id"] == routed["session_id"]
    assert server.hub.registry.get("lab", "gpu-a").free_slots == 1  # type: ignore[union-attr]
    fresh = await again.ask({"type": "route", "id": "job-2", "pipelines": ["scenes"]})
    assert fresh["session_id"] != routed["session_id"]
    await again.ws.close()
