"""Fixtures: a real signaling server on 127.0.0.1 (port 0) with short timers, and clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rtc_annotator.signaling_client import SignalingClient
from signaling.app import SignalingServer
from signaling.config import ServerConfig
from signaling.turn import IceConfig

ADMIN_SECRET = "test-admin-secret"


def server_config(state: Path, **overrides: Any) -> ServerConfig:
    values: dict[str, Any] = dict(
        state_path=state, admin_secret=ADMIN_SECRET, host="127.0.0.1", port=0,
        heartbeat_s=0.2, gone_after_s=0.8, session_grace_s=0.8, sweep_interval_s=0.05,
        hello_timeout_s=2.0, rate_per_s=1000.0, rate_burst=1000.0,
        ice=IceConfig(turn_urls=("turn:127.0.0.1:3478?transport=udp",),
                      turn_secret="turn-secret", turn_ttl_s=600),
    )
    values.update(overrides)
    return ServerConfig(**values)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SignalingServer]:
    srv = SignalingServer(server_config(tmp_path / "state.sqlite3"))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


MakeClient = Callable[..., Awaitable[SignalingClient]]


@pytest.fixture
async def make_client(server: SignalingServer) -> AsyncIterator[MakeClient]:
    """``await make_client(token=..., name=..., url=...)``: connected, closed at teardown."""
    clients: list[SignalingClient] = []

    async def make(**kw: Any) -> SignalingClient:
        url = kw.pop("url", None) or server.url
        kw.setdefault("heartbeat_s", 0.2)
        kw.setdefault("reconnect_min_s", 0.05)
        kw.setdefault("reconnect_max_s", 0.2)
        kw.setdefault("request_timeout_s", 5.0)
        kw.setdefault("connect_timeout_s", 5.0)
        client = SignalingClient(url, **kw)
        clients.append(client)
        await client.connect()
        return client

    try:
        yield make
    finally:
        for c in clients:
            await c.close()


@pytest.fixture
async def room(make_client: MakeClient) -> Callable[..., Awaitable[dict[str, str]]]:
    """``await room("lab")`` -> {"admin": token, "worker": token, "client": token}."""

    async def create(name: str) -> dict[str, str]:
        root = await make_client(admin_secret=ADMIN_SECRET, reconnect=False)
        created = await root.request("create_room", name=name)
        admin = await make_client(token=created["token"])
        out = {"admin": created["token"], "admin_id": created["token_id"]}
        for role in ("worker", "client"):
            reply = await admin.request("issue_token", role=role, ttl_s=600)
            out[role] = reply["token"]
            out[f"{role}_id"] = reply["token_id"]
        return out

    return create


def caps(name: str, *, backends: tuple[str, ...] = (), pipelines: tuple[str, ...] = ("scenes",),
         gpu_mb: int = 0, slots: int = 1, load: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "storage_backends": [{"name": b, "type": "nfs"} for b in backends],
        "pipelines": list(pipelines),
        "gpus": [{"name": "GPU", "memory_mb": gpu_mb}] if gpu_mb else [],
        "job_slots": slots,
        "load": load,
        "version": "0.1.0",
    }
