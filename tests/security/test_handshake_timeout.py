"""The signaling server closes a TCP connection whose HTTP handshake does not arrive in time.

Without it, a client that sends the websocket upgrade one header byte at a time (or nothing at
all) holds a connection and a file descriptor open for as long as it likes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.signaling.test_identity_binding import hello, worker

from .conftest import make_room, open_raw, start_server

TIMEOUT_S = 0.6


async def _closed_within(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(1024), within)
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return data == b""


async def test_stalled_and_dripping_handshakes_are_closed(tmp_path: Path) -> None:
    srv = await start_server(tmp_path / "state.sqlite3", handshake_timeout_s=TIMEOUT_S,
                             gone_after_s=30.0)
    try:
        # 1. connects and sends nothing
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", srv.port)
        # 2. sends the upgrade request a few bytes at a time, never finishing it
        drip_r, drip_w = await asyncio.open_connection("127.0.0.1", srv.port)
        request = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n").encode()

        async def drip() -> None:
            for i in range(0, len(request), 4):
                drip_w.write(request[i:i + 4])
                await drip_w.drain()
                await asyncio.sleep(0.1)

        dripping = asyncio.create_task(drip())
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await _closed_within(silent_r, 5.0)
        assert await _closed_within(drip_r, 5.0)
        elapsed = loop.time() - started
        assert TIMEOUT_S * 0.8 <= elapsed < 5.0
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
        for w in (silent_w, drip_w):
            w.close()
        assert srv.guard.closed == 2

        # an ordinary websocket peer is not affected, however long it stays
        tokens = await make_room(srv, "lab")
        peer = await open_raw(srv, tokens["client"])
        await asyncio.sleep(TIMEOUT_S * 2)
        pong = await peer.ask({"type": "list_workers", "id": "l1"})
        assert pong["type"] != "error", pong
        await peer.close()
        assert srv.guard.closed == 2
    finally:
        await srv.stop()


async def test_session_started_names_the_client_token(tmp_path: Path) -> None:
    """The worker learns which client token it is paired with (jobs belong to it)."""
    srv = await start_server(tmp_path / "state.sqlite3", gone_after_s=30.0)
    try:
        tokens = await make_room(srv, "lab")
        w = await worker(srv, tokens["worker"], "gpu-a")
        c = await hello(srv, tokens["client"], name="laptop")
        routed = await c.ask({"type": "route", "id": "q", "pipelines": ["scenes"]})
        assert routed["type"] == "routed", routed
        started = await w.recv()
        assert started["type"] == "session_started" and started["client"] == "client:laptop"
        assert started["client_token"] == tokens["client_id"]
    finally:
        await srv.stop()
