"""The one signaling client shared by workers, clients and the ``room`` CLI.

It keeps a websocket to the signaling server open: authenticates with a token (``hello``),
sends heartbeats, and after any loss reconnects with exponential backoff and jitter, says hello
again, re-registers the same worker identity and calls :attr:`SignalingClient.on_reconnect`.
Requests are matched to replies by ``id``; an ``error`` reply raises :class:`SignalingError`.
Server-initiated frames (``session_started``, ``session_ended``, ...) come out of :meth:`events`;
relayed ``signal`` frames are queued per session for :meth:`next_signal`.

Usage::

    client = SignalingClient(url, token=token)
    await client.connect()
    await client.register_worker({"name": "gpu-1", "pipelines": ["scenes"], ...})
    async for event in client.events():
        if event["type"] == "session_started": ...
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import WebSocketException

from rtc_annotator.config import SignalingSettings
from rtc_annotator.logs import get_logger
from rtc_annotator.protocol.signaling import (
    MAX_FRAME_BYTES,
    Codes,
    SignalingError,
    decode_frame,
    encode,
)

log = get_logger(__name__)

FATAL_CODES = frozenset({Codes.TOKEN_INVALID, Codes.TOKEN_EXPIRED, Codes.TOKEN_REVOKED,
                         Codes.ROOM_NOT_FOUND, Codes.BAD_ADMIN_SECRET, Codes.REPLACED,
                         Codes.NOT_AUTHENTICATED, Codes.IDENTITY_IN_USE})
"""Errors after which reconnecting cannot help: the client stops and raises them.

``IDENTITY_IN_USE``: a connection with another token holds this client's name (refused
``hello``) or this worker's name (refused re-``register``); saying hello again with the same
name and token is refused again, so it ends :meth:`SignalingClient.connect` (or, on a later
reconnect, the client) with the server's message and hint instead of retrying."""

QueueCallback = Callable[[dict[str, Any]], Awaitable[None] | None]


@dataclass
class _Pending:
    future: asyncio.Future[dict[str, Any]]
    on_update: QueueCallback | None = None


@dataclass
class _SessionInbox:
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)


def backoff_delay(attempt: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [cap/2, cap], cap = min(max, base * 2^n)."""
    cap = min(max_s, base_s * (2 ** min(attempt, 30)))
    return rng.uniform(cap / 2, cap)


class SignalingClient:
    """A reconnecting connection to the signaling server (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        admin_secret: str | None = None,
        name: str | None = None,
        heartbeat_s: float = 5.0,
        reconnect: bool = True,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        request_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        on_reconnect: Callable[[SignalingClient], Awaitable[None]] | None = None,
    ) -> None:
        if (token is None) == (admin_secret is None):
            raise ValueError("give exactly one of token or admin_secret")
        self.url = url
        self.token = token
        self.admin_secret = admin_secret
        self.name = name
        self.heartbeat_s = heartbeat_s
        self.reconnect = reconnect
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.ssl_context = ssl_context
        self.on_reconnect = on_reconnect
        """Awaited after every reconnect (hello and re-registration already done)."""
        self.welcome: dict[str, Any] = {}
        """The server's last ``welcome`` frame (room, role, identity, timers)."""
        self.connections = 0
        """How many times a connection was established (1 after connect())."""
        self.capabilities: dict[str, Any] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._inboxes: dict[str, _SessionInbox] = {}
        self._events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._fatal: SignalingError | None = None
        self._retry_after: float = 0.0
        self._rng = random.Random()

    @classmethod
    def from_settings(cls, settings: SignalingSettings, **overrides: Any) -> SignalingClient:
        """A client for ``[signaling]`` (url, token, heartbeat_s, reconnect_max_s)."""
        kw: dict[str, Any] = {"token": settings.token, "heartbeat_s": settings.heartbeat_s,
                              "reconnect_max_s": settings.reconnect_max_s}
        kw.update(overrides)
        if kw.get("token") is None and kw.get("admin_secret") is None:
            raise SignalingError("no signaling token configured", code=Codes.NOT_AUTHENTICATED,
                                 hint="set [signaling] token (ask the room admin for one)")
        return cls(settings.url, **kw)

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def identity(self) -> str | None:
        return self.welcome.get("identity")

    async def connect(self, timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109
        """Connect and authenticate; return the ``welcome`` frame.

        Raises :class:`SignalingError` at once when the server refuses the hello (or the
        re-registration) with a code in :data:`FATAL_CODES` (a bad, expired or revoked token,
        ``IDENTITY_IN_USE``, ...), and ``CONNECTION_LOST`` when no connection came up in time.
        """
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="signaling-client")
        await self._wait_ready(self.connect_timeout_s if timeout is None else timeout)
        return self.welcome

    async def close(self) -> None:
        """Close for good: no reconnect; waiting calls raise CONNECTION_LOST."""
        self._closed = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._fail_pending(SignalingError("signaling client closed", code=Codes.CONNECTION_LOST))
        self._events.put_nowait(None)

    async def drop_connection(self) -> None:
        """Abort the current connection without a close handshake (fault injection)."""
        ws = self._ws
        if ws is not None:
            ws.transport.abort()

    async def __aenter__(self) -> SignalingClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _wait_ready(self, wait_s: float) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closed:
            raise SignalingError("signaling client closed", code=Codes.CONNECTION_LOST)
        if self._ready.is_set():
            return
        fatal_wait = asyncio.ensure_future(self._ready.wait())
        runner = self._runner
        waits: set[asyncio.Future[Any]] = {fatal_wait}
        if runner is not None:
            waits.add(runner)
        try:
            await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            fatal_wait.cancel()
        if self._fatal is not None:
            raise self._fatal
        if not self._ready.is_set():
            raise SignalingError(f"cannot reach the signaling server at {self.url}",
                                 code=Codes.CONNECTION_LOST,
                                 hint="check [signaling] url and that the server runs")

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                async with ws_connect(self.url, max_size=MAX_FRAME_BYTES * 4,
                                      ping_interval=None, open_timeout=self.connect_timeout_s,
                                      ssl=self.ssl_context) as ws:
                    self._ws = ws
                    await self._session(ws)
                    attempt = 0
            except SignalingError as exc:
                if exc.code in FATAL_CODES:
                    log.warning("signaling refused, not reconnecting",
                                ctx={"code": exc.code, "error": exc.message,
                                     "connections": self.connections})
                    self._fatal = exc
                    self._fail_pending(exc)
                    # event readers see why the client stopped, as with a server-sent error
                    self._events.put_nowait({"type": "error", "code": exc.code,
                                             "message": exc.message, "hint": exc.hint})
                    self._events.put_nowait(None)
                    return
            except (OSError, WebSocketException, TimeoutError) as exc:
                log.info("signaling connection lost", ctx={"error": type(exc).__name__})
            finally:
                self._ws = None
                self._ready.clear()
            self._fail_pending(SignalingError("connection to the signaling server was lost",
                                              code=Codes.CONNECTION_LOST))
            if self._closed or not self.reconnect:
                self._closed = True
                self._events.put_nowait(None)
                return
            delay = max(self._retry_after,
                        backoff_delay(attempt, base_s=self.reconnect_min_s,
                                      max_s=self.reconnect_max_s, rng=self._rng))
            self._retry_after = 0.0
            attempt += 1
            log.info("reconnecting", ctx={"attempt": attempt, "delay_s": round(delay, 2)})
            await asyncio.sleep(delay)

    async def _session(self, ws: ClientConnection) -> None:
        """One connection: hello, re-register, then read until it closes."""
        reader = asyncio.create_task(self._reader(ws))
        heart: asyncio.Task[None] | None = None
        try:
            hello: dict[str, Any] = {"protocol": 1}
            if self.token is not None:
                hello["token"] = self.token
            else:
                hello["admin_secret"] = self.admin_secret
            if self.name is not None:
                hello["name"] = self.name
            self.welcome = await self._call(ws, "hello", hello, self.request_timeout_s, None)
            if self.capabilities is not None:
                await self._call(ws, "register", {"capabilities": self.capabilities},
                                 self.request_timeout_s, None)
            self.connections += 1
            self._ready.set()
            heart = asyncio.create_task(self._heartbeats(ws))
            log.info("signaling connected", ctx={"identity": self.identity,
                                                 "room": self.welcome.get("room"),
                                                 "n": self.connections})
            if self.connections > 1 and self.on_reconnect is not None:
                try:
                    await self.on_reconnect(self)
                except Exception:
                    log.exception("on_reconnect hook failed")
            await reader
        finally:
            if heart is not None:
                heart.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _heartbeats(self, ws: ClientConnection) -> None:
        interval = min(self.heartbeat_s, float(self.welcome.get("heartbeat_s") or 1e9))
        while True:
            await asyncio.sleep(interval)
            try:
                await self._call(ws, "heartbeat", {}, max(interval * 2, 1.0), None)
            except SignalingError:
                log.info("heartbeat unanswered, reconnecting")
                await ws.close()
                return

    async def _reader(self, ws: ClientConnection) -> None:
        async for raw in ws:
            try:
                frame = decode_frame(raw)
            except SignalingError as exc:
                log.warning("bad frame from server", ctx={"code": exc.code})
                continue
            await self._dispatch(frame)

    async def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        rid = frame.get("id")
        pending = self._pending.get(rid) if isinstance(rid, str) else None
        if pending is not None:
            if kind == "queued" and pending.on_update is not None:
                try:
                    result = pending.on_update(frame)
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("on_queue callback failed")
            elif kind != "queued" and not pending.future.done():
                if kind == "error":
                    pending.future.set_exception(SignalingError.from_frame(frame))
                else:
                    pending.future.set_result(frame)
            return
        if kind == "signal":
            self._inbox(str(frame.get("session_id"))).queue.put_nowait(dict(frame["data"]))
            return
        if kind == "session_ended":
            self._inbox(str(frame.get("session_id"))).queue.put_nowait(
                {"kind": "bye", "ended": True, "reason": frame.get("reason", ""),
                 "by": frame.get("by")})
        elif kind == "reconnect":
            self._retry_after = float(frame.get("retry_after_s") or 0.0)
        elif kind == "error" and frame.get("code") in FATAL_CODES:
            self._fatal = SignalingError.from_frame(frame)
            self.reconnect = False
        self._events.put_nowait(frame)

    def _inbox(self, session_id: str) -> _SessionInbox:
        box = self._inboxes.get(session_id)
        if box is None:
            box = self._inboxes[session_id] = _SessionInbox()
        return box

    def _fail_pending(self, exc: SignalingError) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(exc)
        self._pending.clear()

    # ------------------------------------------------------------------ requests

    def new_id(self, kind: str = "req") -> str:
        return f"{kind[:8]}-{next(self._ids)}"

    async def _call(self, ws: ClientConnection, kind: str, fields: dict[str, Any],
                    wait_s: float | None, on_update: QueueCallback | None,
                    rid: str | None = None) -> dict[str, Any]:
        rid = rid or self.new_id(kind)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = _Pending(fut, on_update)
        try:
            await ws.send(encode({"type": kind, "id": rid, **fields}))
            return await asyncio.wait_for(fut, wait_s)
        except TimeoutError:
            raise SignalingError(f"no reply to {kind} within {wait_s:g} s", code=Codes.TIMEOUT,
                                 hint="the signaling server is slow or unreachable") from None
        except (WebSocketException, OSError):
            raise SignalingError("connection to the signaling server was lost",
                                 code=Codes.CONNECTION_LOST) from None
        finally:
            self._pending.pop(rid, None)

    async def request(self, type: str, *, timeout: float | None = -1.0,  # noqa: ASYNC109
                      on_update: QueueCallback | None = None, request_id: str | None = None,
                      **fields: Any) -> dict[str, Any]:
        """Send one request and await its reply (same id). ``error`` replies raise.

        ``timeout``: seconds (None: wait forever; default: ``request_timeout_s``).
        ``on_update``: called with each ``queued`` frame carrying this request's id.
        ``request_id``: use this id instead of a fresh one (idempotent retries).
        """
        await self._wait_ready(self.request_timeout_s)
        ws = self._ws
        if ws is None:
            raise SignalingError("not connected", code=Codes.CONNECTION_LOST)
        wait = self.request_timeout_s if timeout == -1.0 else timeout
        return await self._call(ws, type, fields, wait, on_update, request_id)

    async def register_worker(self, capabilities: dict[str, Any]) -> dict[str, Any]:
        """Register (and after every reconnect re-register) this worker; return ``registered``."""
        reply = await self.request("register", capabilities=capabilities)
        self.capabilities = dict(capabilities)
        return reply

    async def update_load(self, load: int) -> None:
        """Tell the server how many jobs run now (also kept for re-registration)."""
        if self.capabilities is not None:
            self.capabilities["load"] = load
        await self.request("load", load=load)

    async def list_workers(self, *, backend: str | None = None, pipeline: str | None = None,
                           min_gpu_memory_mb: int = 0) -> list[dict[str, Any]]:
        reply = await self.request("list_workers", backend=backend, pipeline=pipeline,
                                   min_gpu_memory_mb=min_gpu_memory_mb)
        return list(reply["workers"])

    async def route(self, *, pipelines: Iterable[str] = (), required_storage: str | None = None,
                    min_gpu_memory_mb: int = 0, strict: bool = False,
                    on_queue: QueueCallback | None = None,
                    timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109
        """Ask for a worker; wait (through ``queued`` updates) for the ``routed`` reply.

        Returns the ``routed`` frame: ``{"session_id", "worker": name, "worker_info": {...},
        "ice_servers": [...], "decision": {...}}``.
        A lost connection re-sends the request, with the same id, after reconnecting; with a
        stable client ``name`` the server answers a request it had already routed with the
        same session instead of reserving a second one. Raises SignalingError
        (e.g. NO_MATCHING_WORKER naming the failed requirement).
        """
        fields = {"pipelines": list(pipelines), "required_storage": required_storage,
                  "min_gpu_memory_mb": min_gpu_memory_mb, "strict": strict}
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        rid = self.new_id("route")
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                return await self.request("route", timeout=left, on_update=on_queue,
                                          request_id=rid, **fields)
            except SignalingError as exc:
                if exc.code != Codes.CONNECTION_LOST or self._closed or not self.reconnect:
                    raise

    async def send_signal(self, session_id: str, data: dict[str, Any]) -> None:
        """Relay ``data`` ({"kind": offer|answer|candidate|bye, ...}) to the session's peer."""
        await self.request("signal", session_id=session_id, data=data)

    async def next_signal(
        self, session_id: str, timeout: float | None = None  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Next ``data`` the peer sent in this session. When the session ends, returns
        ``{"kind": "bye", "ended": True, "reason": ..., "by": ...}``. TimeoutError on timeout."""
        box = self._inbox(session_id)
        return await asyncio.wait_for(box.queue.get(), timeout)

    async def end_session(self, session_id: str, reason: str = "") -> None:
        """End a session; this frees the worker's slot on the server."""
        try:
            await self.request("end_session", session_id=session_id, reason=reason)
        finally:
            self._inboxes.pop(session_id, None)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Server-initiated frames (session_started, session_ended, reconnect, errors without
        id) until the client is closed."""
        while True:
            frame = await self._events.get()
            if frame is None:
                self._events.put_nowait(None)  # let other iterators finish too
                return
            yield frame

    async def next_event(self, type: str | None = None,
                         timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109
        """The next server-initiated frame (of ``type`` when given; others are dropped)."""
        async def first() -> dict[str, Any]:
            async for frame in self.events():
                if type is None or frame["type"] == type:
                    return frame
            raise SignalingError("signaling client closed", code=Codes.CONNECTION_LOST)

        return await asyncio.wait_for(first(), timeout)
