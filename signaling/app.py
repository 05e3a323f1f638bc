"""The aiohttp application: websocket endpoint ``/ws``, ``/healthz``, ``/metrics``.

This layer only moves bytes: every frame goes to :class:`signaling.hub.Hub`, every outgoing
frame comes from a per-connection outbox drained by one writer task (so a slow peer never
blocks the hub, and frames to one peer keep their order).

Every TCP connection must deliver a whole HTTP request (headers included: the websocket upgrade)
within ``handshake_timeout_s`` of being accepted, or it is closed (:class:`HandshakeGuard`);
aiohttp itself has no such limit before the first request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.web_protocol import RequestHandler

from rtc_annotator.logs import get_logger
from signaling.config import ServerConfig
from signaling.hub import Hub
from signaling.rooms import RoomStore

log = get_logger(__name__)

HUB_KEY: web.AppKey[Hub] = web.AppKey("hub", Hub)
TASKS_KEY: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("ws_tasks")
_CLOSE = object()


class HandshakeGuard:
    """Protocol factory around aiohttp's: a connection whose first request has not reached a
    handler within ``timeout_s`` of its accept is closed (slow or stalled HTTP handshakes)."""

    def __init__(self, inner: Any, timeout_s: float) -> None:
        """``inner``: aiohttp's protocol factory (``AppRunner.server``), may be set later."""
        self.inner = inner
        self.timeout_s = timeout_s
        self._arrived: set[RequestHandler] = set()
        self.closed = 0
        """Connections closed for a slow handshake (for tests and logs)."""

    def __call__(self) -> RequestHandler:
        proto: RequestHandler = self.inner()
        asyncio.get_running_loop().call_later(self.timeout_s, self._check, proto)
        return proto

    def arrived(self, proto: Any) -> None:
        """A request of this connection reached a handler."""
        if isinstance(proto, RequestHandler):
            self._arrived.add(proto)

    def _check(self, proto: RequestHandler) -> None:
        if proto in self._arrived:
            self._arrived.discard(proto)
            return
        transport = proto.transport
        if transport is None or transport.is_closing():
            return
        peer = transport.get_extra_info("peername")
        log.warning("http handshake too slow, closing",
                    ctx={"remote": peer[0] if peer else "?", "timeout_s": self.timeout_s})
        self.closed += 1
        transport.abort()


GUARD_KEY: web.AppKey[HandshakeGuard] = web.AppKey("handshake_guard", HandshakeGuard)


async def _ws_handler(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    cfg = hub.config
    # aiohttp closes with 1009 above max_msg_size; below it the hub answers FRAME_TOO_LARGE
    ws = web.WebSocketResponse(max_msg_size=cfg.max_frame_bytes * 4, autoping=True)
    await ws.prepare(request)
    task = asyncio.current_task()
    if task is not None:
        request.app[TASKS_KEY].add(task)
        task.add_done_callback(request.app[TASKS_KEY].discard)
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    closing: list[tuple[int, str]] = []

    def close_transport(code: int, reason: str) -> None:
        if not closing:
            closing.append((code, reason))
            outbox.put_nowait(_CLOSE)

    def send_text(text: str) -> None:
        if closing:
            return
        if outbox.qsize() >= cfg.max_outbox:
            log.warning("peer too slow, closing", ctx={"conn": conn.id})
            close_transport(4004, "too slow")
            return
        outbox.put_nowait(text)

    async def writer() -> None:
        while True:
            item = await outbox.get()
            if item is _CLOSE:
                code, reason = closing[0]
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(code=code, message=reason.encode()), 2.0)
                return
            try:
                await ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    remote = request.remote or "?"
    conn = hub.new_conn(remote, send_text, close_transport)
    writer_task = asyncio.create_task(writer())
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await hub.handle_text(conn, msg.data)
            else:
                break
            if closing:
                break
    finally:
        hub.connection_closed(conn)
        if not closing:
            close_transport(1000, "bye")
        try:
            await asyncio.wait_for(writer_task, 3.0)
        except (TimeoutError, asyncio.CancelledError):
            writer_task.cancel()
    return ws


async def _healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    status = "shutting_down" if hub.closing else "ok"
    return web.json_response({"status": status, **hub.gauges()},
                             status=503 if hub.closing else 200)


async def _metrics(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    return web.Response(text=hub.metrics.render(hub.gauges()),
                        content_type="text/plain", charset="utf-8",
                        headers={"X-Prometheus-Format": "0.0.4"})


@web.middleware
async def _handshake_arrived(request: web.Request, handler: Any) -> web.StreamResponse:
    guard = request.app.get(GUARD_KEY)
    if guard is not None:
        guard.arrived(request.protocol)
    response: web.StreamResponse = await handler(request)
    return response


def make_app(hub: Hub, guard: HandshakeGuard | None = None) -> web.Application:
    app = web.Application(middlewares=[_handshake_arrived])
    app[HUB_KEY] = hub
    if guard is not None:
        app[GUARD_KEY] = guard
    app[TASKS_KEY] = set()
    app.router.add_get("/ws", _ws_handler)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    return app


class SignalingServer:
    """Start and stop the server in a running event loop (tests, ``python -m signaling``)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = RoomStore(config.state_path)
        self.hub = Hub(config, self.store)
        self.port: int = config.port
        self.guard = HandshakeGuard(None, config.handshake_timeout_s)
        self.app = make_app(self.hub, self.guard)
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        scheme = "wss" if self.config.cert else "ws"
        return f"{scheme}://{self.config.host}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        scheme = "https" if self.config.cert else "http"
        return f"{scheme}://{self.config.host}:{self.port}"

    async def start(self) -> None:
        await self.store.open()
        ctx: ssl.SSLContext | None = None
        if self.config.cert is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.config.cert),
                                str(self.config.key) if self.config.key else None)
        self._runner = web.AppRunner(self.app, access_log=None,
                                     handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        self.guard.inner = self._runner.server
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self.guard, self.config.host, self.config.port,
                                                  ssl=ctx, backlog=128)
        self.port = int(self._listener.sockets[0].getsockname()[1])
        self._sweeper = asyncio.create_task(self._sweep_loop())
        log.info("signaling server listening", ctx={"url": self.url})

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval_s)
            try:
                self.hub.sweep()
            except Exception:
                log.exception("sweep failed")

    async def stop(self) -> None:
        """Graceful shutdown: tell peers to reconnect, let writers flush, close, persist."""
        self.hub.shutdown()
        running: set[asyncio.Task[Any]] = self.app[TASKS_KEY]
        tasks = set(running)
        if tasks:
            await asyncio.wait(tasks, timeout=3.0)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.store.close()
        log.info("signaling server stopped")
