"""Security suite fixtures: a live signaling server on 127.0.0.1 with test-tuned limits, bare
websocket peers, and rooms with one token per role.

Reuses the signaling suite's ``server_config`` (short timers); each test that needs other limits
starts its own server through :func:`start_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from rtc_annotator.signaling_client import SignalingClient
from signaling.app import SignalingServer
from tests.signaling.conftest import ADMIN_SECRET, caps, server_config

__all__ = ["ADMIN_SECRET", "Raw", "caps", "make_room", "open_raw", "server_config",
           "start_server"]


class Raw:
    """A bare websocket peer that speaks JSON frames by hand (nothing is validated)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    async def recv(self, wait_s: float = 5.0) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), wait_s))
        return obj

    async def ask(self, frame: dict[str, Any], wait_s: float = 5.0) -> dict[str, Any]:
        """Send a request, return the reply with its id (other frames are skipped)."""
        await self.send(frame)
        async with asyncio.timeout(wait_s):
            while True:
                reply = await self.recv(wait_s)
                if reply.get("id") == frame.get("id") and reply.get("type") != "queued":
                    return reply

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()


async def open_raw(server: SignalingServer, token: str | None = None,
                   **hello: Any) -> Raw:
    peer = Raw(await ws_connect(server.url, ping_interval=None, max_size=None,
                                open_timeout=5))
    if token is not None:
        welcome = await peer.ask({"type": "hello", "id": "h", "token": token, **hello})
        assert welcome["type"] == "welcome", welcome
    return peer


async def start_server(state: Path, **overrides: Any) -> SignalingServer:
    srv = SignalingServer(server_config(state, **overrides))
    await srv.start()
    return srv


async def make_room(server: SignalingServer, name: str) -> dict[str, str]:
    """Create ``name``; return tokens (and token ids) for admin, worker and client."""
    root = SignalingClient(server.url, admin_secret=ADMIN_SECRET, reconnect=False)
    await root.connect()
    try:
        created = await root.request("create_room", name=name)
    finally:
        await root.close()
    out = {"admin": created["token"], "admin_id": created["token_id"]}
    admin = SignalingClient(server.url, token=created["token"], reconnect=False)
    await admin.connect()
    try:
        for role in ("worker", "client"):
            reply = await admin.request("issue_token", role=role, ttl_s=600)
            out[role], out[f"{role}_id"] = reply["token"], reply["token_id"]
    finally:
        await admin.close()
    return out


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[SignalingServer]:
    """A signaling server with the fuzz-friendly limits (rate limit raised, long liveness)."""
    srv = await start_server(tmp_path / "state.sqlite3", rate_per_s=1e6, rate_burst=1e6,
                             gone_after_s=60.0, hello_timeout_s=30.0, max_outbox=100_000)
    try:
        yield srv
    finally:
        await srv.stop()


RawFactory = Callable[..., Awaitable[Raw]]


@pytest.fixture
async def raws(live: SignalingServer) -> AsyncIterator[RawFactory]:
    """``await raws(token=None, **hello)``: bare peers on ``live``, closed at teardown."""
    peers: list[Raw] = []

    async def make(token: str | None = None, **hello: Any) -> Raw:
        peer = await open_raw(live, token, **hello)
        peers.append(peer)
        return peer

    try:
        yield make
    finally:
        for peer in peers:
            await peer.close()


# real aiortc peers and a JobServer (the transport suite's environment)
from tests.transport.conftest import Env, ToyExecutor, env  # noqa: E402, F401
