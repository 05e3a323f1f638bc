"""The server's logic: authenticates connections, dispatches requests, routes, pairs, relays.

It does no socket I/O: a connection is a :class:`Conn` whose ``send`` queues a frame and whose
``close`` asks the transport (``signaling.app``) to close it. That keeps every rule here testable
and the aiohttp layer a byte mover.
"""

from __future__ import annotations

import enum
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from rtc_annotator.logs import get_logger
from rtc_annotator.protocol import signaling as p
from rtc_annotator.protocol.signaling import Codes, SignalingError
from signaling import routing, tokens
from signaling.config import ServerConfig
from signaling.metrics import Metrics
from signaling.ratelimit import TokenBucket
from signaling.registry import Registry, WorkerEntry
from signaling.rooms import Room, RoomStore
from signaling.sessions import Session, SessionTable
from signaling.tokens import Claims

log = get_logger(__name__)

Reply = dict[str, Any] | None


class ConnState(enum.Enum):
    OPEN = "open"
    AUTHENTICATED = "authenticated"
    CLOSED = "closed"


@dataclass(eq=False)
class Conn:
    """One websocket connection as the hub sees it."""

    id: str
    remote: str
    send_text: Callable[[str], None]
    """Queue one text frame for the peer (never blocks)."""
    close_transport: Callable[[int, str], None]
    """Ask the transport to close with a websocket close code and reason."""
    bucket: TokenBucket
    opened_at: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    state: ConnState = ConnState.OPEN
    claims: Claims | None = None
    role: str = ""
    room: str = ""
    identity: str | None = None
    worker_name: str | None = None

    def set_state(self, state: ConnState) -> None:
        log.debug("connection state", ctx={"conn": self.id, "from": self.state.value,
                                           "to": state.value, "identity": self.identity})
        self.state = state

    def send(self, frame: dict[str, Any]) -> None:
        if self.state is not ConnState.CLOSED:
            self.send_text(p.encode(frame))

    def close(self, code: int, reason: str) -> None:
        self.close_transport(code, reason)


@dataclass
class QueuedRoute:
    """A route request waiting for a free worker."""

    conn: Conn
    route_id: str
    req: p.Requirements
    enqueued_at: float
    position: int = 0


Handler = Callable[[Conn, Any], Awaitable[Reply]]

ROOM_ROLES = ("worker", "client", "admin")
CLIENTS = ("client", "admin")


class Hub:
    """All server state and the handling of every message type."""

    def __init__(self, config: ServerConfig, store: RoomStore) -> None:
        self.config = config
        self.store = store
        self.registry = Registry()
        self.sessions = SessionTable()
        self.metrics = Metrics()
        self.conns: set[Conn] = set()
        self.by_identity: dict[tuple[str, str], Conn] = {}
        self.absent: dict[tuple[str, str], float] = {}
        self.owners: dict[tuple[str, str], str] = {}
        """Token id (``jti``) holding each live or absent identity (see :meth:`_check_claim`)."""
        self.queues: dict[str, list[QueuedRoute]] = {}
        self.decisions: dict[str, deque[p.Decision]] = {}
        self.closing = False
        self._orphans: dict[tuple[str, str], WorkerEntry] = {}
        """Offline workers that still hold sessions, kept until the grace period ends."""
        self._handlers: dict[str, tuple[Handler, tuple[str, ...]]] = {
            "heartbeat": (self._heartbeat, (*ROOM_ROLES, "server")),
            "register": (self._register, ("worker",)),
            "load": (self._load, ("worker",)),
            "list_workers": (self._list_workers, ROOM_ROLES),
            "route": (self._route, CLIENTS),
            "cancel_route": (self._cancel_route, CLIENTS),
            "signal": (self._signal, ROOM_ROLES),
            "end_session": (self._end_session, ROOM_ROLES),
            "issue_token": (self._issue_token, ("admin",)),
            "revoke_token": (self._revoke_token, ("admin",)),
            "get_policy": (self._get_policy, ROOM_ROLES),
            "set_policy": (self._set_policy, ("admin",)),
            "drain": (self._drain, ("admin",)),
            "decisions": (self._decisions, ("admin",)),
            "route_queue": (self._route_queue, ("admin",)),
            "create_room": (self._create_room, ("server",)),
        }

    # ------------------------------------------------------------------ connection lifecycle

    def new_conn(self, remote: str, send_text: Callable[[str], None],
                 close_transport: Callable[[int, str], None]) -> Conn:
        conn = Conn(id=secrets.token_hex(4), remote=remote, send_text=send_text,
                    close_transport=close_transport,
                    bucket=TokenBucket(self.config.rate_per_s, self.config.rate_burst))
        self.conns.add(conn)
        return conn

    async def handle_text(self, conn: Conn, text: str | bytes) -> None:
        """One frame from a peer: decode, check, dispatch, answer. Never raises."""
        conn.last_seen = time.monotonic()
        request_id: str | None = None
        try:
            msg = p.decode_request(text, max_bytes=self.config.max_frame_bytes)
            request_id = getattr(msg, "id", None)
            kind: str = msg.type  # type: ignore[attr-defined]
            self.metrics.frames[kind] += 1
            if not conn.bucket.take():
                raise SignalingError("too many frames on this connection",
                                     code=Codes.RATE_LIMITED,
                                     hint=f"stay under {self.config.rate_per_s:g} frames/s")
            if kind == "hello":
                reply = await self._hello(conn, msg)  # type: ignore[arg-type]
            else:
                reply = await self._dispatch(conn, kind, msg)
        except SignalingError as exc:
            self.metrics.errors[exc.code] += 1
            log.info("request refused", ctx={"conn": conn.id, "code": exc.code,
                                             "identity": conn.identity})
            conn.send(p.error_frame(exc, request_id))
            return
        except Exception:  # a bug must not take the server down
            log.exception("internal error", ctx={"conn": conn.id})
            self.metrics.errors[Codes.INTERNAL_ERROR] += 1
            conn.send(p.error_frame(SignalingError("internal server error",
                                                   code=Codes.INTERNAL_ERROR,
                                                   hint="retry; report it if it persists"),
                                    request_id))
            return
        if reply is not None:
            conn.send(reply)

    async def _dispatch(self, conn: Conn, kind: str, msg: BaseModel) -> Reply:
        if conn.state is not ConnState.AUTHENTICATED:
            raise SignalingError(f"{kind} before hello", code=Codes.NOT_AUTHENTICATED,
                                 hint='send {"type": "hello", "id": ..., "token": ...} first')
        handler, roles = self._handlers[kind]
        if conn.role not in roles:
            raise SignalingError(f"role {conn.role!r} may not send {kind}",
                                 code=Codes.FORBIDDEN,
                                 hint=f"{kind} needs a token with role {' or '.join(roles)}")
        return await handler(conn, msg)

    def connection_closed(self, conn: Conn) -> None:
        """Forget a connection; its sessions wait ``session_grace_s`` for the member to return."""
        if conn.state is ConnState.CLOSED:
            return
        conn.set_state(ConnState.CLOSED)
        self.conns.discard(conn)
        if not conn.room:
            return
        room = conn.room
        if conn.worker_name is not None:
            entry = self.registry.remove(room, conn.worker_name, conn)
            if entry is not None:
                log.info("worker offline", ctx={"room": room, "worker": entry.name,
                                                 "sessions": len(entry.sessions)})
                if entry.sessions:
                    # keep the slot reservations with the identity until grace runs out
                    self._orphans[(room, entry.name)] = entry
        queue = self.queues.get(room)
        if queue:
            self.queues[room] = [q for q in queue if q.conn is not conn]
            self._announce_positions(room)
        key = (room, conn.identity) if conn.identity is not None else None
        if key is not None and self.by_identity.get(key) is conn:
            del self.by_identity[key]
            if self.sessions.of(*key):
                self.absent[key] = time.monotonic()  # still bound to its token until then
            else:
                self.owners.pop(key, None)  # gone for good: any token of the role may claim it

    def sweep(self) -> None:
        """Close silent connections and end sessions whose member did not come back."""
        now = time.monotonic()
        cfg = self.config
        for conn in list(self.conns):
            silent = now - conn.last_seen
            if conn.state is ConnState.OPEN and now - conn.opened_at > cfg.hello_timeout_s:
                conn.close(4002, "no hello")
                self.connection_closed(conn)
            elif silent > cfg.gone_after_s:
                log.info("peer silent, closing", ctx={"conn": conn.id, "identity": conn.identity,
                                                      "silent_s": round(silent, 1)})
                conn.close(4000, "heartbeat timeout")
                self.connection_closed(conn)
        wall = time.time()
        for room_name, workers in self.registry.rooms.items():
            known = self.store.rooms.get(room_name)
            if known is not None:
                for entry in workers.values():
                    entry.prune(wall, known.policy.recent_window_s)
        for key, since in list(self.absent.items()):
            if now - since > cfg.session_grace_s:
                self._forget(*key, reason=f"{key[1]} gone")

    def _forget(self, room: str, identity: str, *, reason: str) -> None:
        """``identity`` is gone for good: end its sessions, free its slots and its name."""
        key = (room, identity)
        self.absent.pop(key, None)
        self.owners.pop(key, None)
        for s in self.sessions.of(room, identity):
            self._finish(s, reason, by=identity)
        if identity.startswith("worker:"):
            self._orphans.pop((room, identity[len("worker:"):]), None)
        self._process_queue(room)

    def shutdown(self) -> None:
        """Tell every peer to reconnect (they will find the restarted server)."""
        self.closing = True
        for conn in list(self.conns):
            conn.send({"type": "reconnect", "reason": "server shutting down",
                       "retry_after_s": self.config.shutdown_retry_after_s})
            conn.close(1012, "server restart")

    # ------------------------------------------------------------------ hello

    async def _hello(self, conn: Conn, msg: p.Hello) -> Reply:
        if conn.state is not ConnState.OPEN:
            raise SignalingError("hello sent twice", code=Codes.ALREADY_AUTHENTICATED,
                                 hint="send hello once per connection")
        if msg.protocol != p.PROTOCOL_VERSION:
            raise SignalingError(f"protocol version {msg.protocol} is not supported",
                                 code=Codes.INVALID_MESSAGE,
                                 hint=f"this server speaks protocol {p.PROTOCOL_VERSION}; "
                                 "upgrade the client or the server")
        if self.closing:
            raise SignalingError("server is shutting down", code=Codes.CONNECTION_LOST,
                                 hint="reconnect in a moment")
        if msg.admin_secret is not None:
            if not secrets.compare_digest(msg.admin_secret.encode(),
                                          self.config.admin_secret.encode()):
                raise SignalingError("wrong admin secret", code=Codes.BAD_ADMIN_SECRET,
                                     hint="use the server's $SIGNALING_ADMIN_SECRET")
            conn.role, conn.identity = "server", f"server:{conn.id}"
            conn.set_state(ConnState.AUTHENTICATED)
            return {"type": "welcome", "id": msg.id, "role": "server", "room": None,
                    "identity": conn.identity, **self._welcome_common()}
        if msg.token is None:
            raise SignalingError("hello needs a token", code=Codes.NOT_AUTHENTICATED,
                                 hint="ask the room admin for a token (rtc-annotator room token)")
        claims = tokens.verify(self.store.signing_key, msg.token)
        if claims.jti in self.store.revoked:
            raise SignalingError("token has been revoked", code=Codes.TOKEN_REVOKED,
                                 hint="ask the room admin for a new token")
        if claims.room not in self.store.rooms:
            raise SignalingError(f"room {claims.room!r} does not exist",
                                 code=Codes.ROOM_NOT_FOUND, hint="create it with room create")
        identity: str | None = None
        if claims.role != "worker":
            name = msg.name or f"{claims.jti}-{secrets.token_hex(3)}"
            identity = f"{claims.role}:{name}"
            self._check_claim(conn, claims.room, identity, claims.jti)  # before any change
        conn.claims, conn.role, conn.room = claims, claims.role, claims.room
        if identity is not None:
            self._bind(conn, identity)
        conn.set_state(ConnState.AUTHENTICATED)
        log.info("peer authenticated", ctx={"conn": conn.id, "room": conn.room,
                                            "role": conn.role, "identity": conn.identity,
                                            "label": claims.label or None})
        return {"type": "welcome", "id": msg.id, "role": conn.role, "room": conn.room,
                "identity": conn.identity, "token_expires_at": claims.exp,
                **self._welcome_common()}

    def _welcome_common(self) -> dict[str, Any]:
        return {"protocol": p.PROTOCOL_VERSION, "heartbeat_s": self.config.heartbeat_s,
                "gone_after_s": self.config.gone_after_s,
                "max_frame_bytes": self.config.max_frame_bytes, "server_time": time.time()}

    def _check_claim(self, conn: Conn, room: str, identity: str, jti: str) -> None:
        """Refuse ``identity`` to ``conn`` (token id ``jti``) when another token holds it.

        An identity is held by the token that first claimed it for as long as it has a live
        connection or is absent within ``session_grace_s`` (its sessions are kept for it). The
        same token may always come back (and replaces its old connection); another token gets
        ``IDENTITY_IN_USE`` and nothing changes for the holder.
        """
        key = (room, identity)
        holder = self.owners.get(key)
        if holder is None or holder == jti:
            return
        if key not in self.by_identity and key not in self.absent:
            del self.owners[key]  # stale: the identity is gone, the name is free
            return
        live = self.by_identity.get(key)
        log.warning("identity in use by another token, refused", ctx={
            "room": room, "identity": identity, "conn": conn.id,
            "holder_conn": live.id if live is not None else None,
            "holder_absent": live is None, "token_id": jti, "holder_token_id": holder})
        if identity.startswith("worker:"):
            other = "register under another worker name"
        else:
            other = "say hello with another name"
        raise SignalingError(
            f"{identity} is in use in room {room!r} by a connection with another token",
            code=Codes.IDENTITY_IN_USE,
            hint=f"{other}, or wait until the other connection is gone (an absent identity is "
            f"kept {self.config.session_grace_s:g} s for its sessions), or ask the room admin "
            "to revoke the other token")

    def _bind(self, conn: Conn, identity: str) -> None:
        """Make ``conn`` the live connection of ``identity``; close the one it replaces.

        Raises ``IDENTITY_IN_USE`` (see :meth:`_check_claim`) before changing anything.
        """
        assert conn.claims is not None
        key = (conn.room, identity)
        self._check_claim(conn, conn.room, identity, conn.claims.jti)
        old = self.by_identity.get(key)
        conn.identity = identity
        self.by_identity[key] = conn
        self.owners[key] = conn.claims.jti
        self.absent.pop(key, None)
        if old is not None and old is not conn:
            log.info("connection replaced", ctx={"identity": identity, "old": old.id,
                                                 "new": conn.id})
            old.send({"type": "error", "code": Codes.REPLACED,
                      "message": f"{identity} connected again elsewhere",
                      "hint": "only one connection per identity is kept"})
            old.identity = None  # its close must not unbind the new connection
            old.close(4001, "replaced")
            self.connection_closed(old)

    # ------------------------------------------------------------------ worker

    async def _register(self, conn: Conn, msg: p.Register) -> Reply:
        caps = msg.capabilities
        if conn.worker_name is not None and conn.worker_name != caps.name:
            raise SignalingError(f"connection already registered as {conn.worker_name!r}",
                                 code=Codes.INVALID_MESSAGE,
                                 hint="one worker per connection; open another connection")
        room = self.store.rooms[conn.room]
        self._bind(conn, f"worker:{caps.name}")
        conn.worker_name = caps.name
        entry, replaced = self.registry.register(room.name, caps, conn,
                                                 draining=caps.name in room.drained)
        orphan = self._orphans.pop((room.name, caps.name), None)
        if orphan is not None:
            entry.sessions |= orphan.sessions
            entry.recent = orphan.recent
            entry.refresh()
        if replaced is not None and replaced.conn is not None:
            replaced.conn.worker_name = None
        log.info("worker registered", ctx={
            "room": room.name, "worker": caps.name, "slots": caps.job_slots,
            "backends": ",".join(sorted(caps.backend_names())) or "-",
            "pipelines": ",".join(caps.pipelines) or "-", "replaced": replaced is not None})
        self._process_queue(room.name)
        info = entry.info(time.time(), room.policy.recent_window_s)
        return {"type": "registered", "id": msg.id, "worker": info.model_dump(mode="json"),
                "sessions": sorted(entry.sessions)}

    async def _load(self, conn: Conn, msg: p.LoadUpdate) -> Reply:
        entry = self._own_entry(conn)
        entry.set_load(msg.load)
        self._process_queue(conn.room)
        return {"type": "ok", "id": msg.id}

    def _own_entry(self, conn: Conn) -> WorkerEntry:
        entry = (self.registry.get(conn.room, conn.worker_name)
                 if conn.worker_name is not None else None)
        if entry is None or entry.conn is not conn:
            raise SignalingError("worker is not registered on this connection",
                                 code=Codes.NOT_REGISTERED, hint="send register first")
        return entry

    async def _heartbeat(self, conn: Conn, msg: p.Heartbeat) -> Reply:
        return {"type": "heartbeat_ack", "id": msg.id, "server_time": time.time()}

    # ------------------------------------------------------------------ discovery & routing

    async def _list_workers(self, conn: Conn, msg: p.ListWorkers) -> Reply:
        room = self.store.rooms[conn.room]
        rows = self.registry.listing(room.name, room.policy.recent_window_s,
                                     backend=msg.backend, pipeline=msg.pipeline,
                                     min_gpu_memory_mb=msg.min_gpu_memory_mb)
        return {"type": "workers", "id": msg.id,
                "workers": [w.model_dump(mode="json") for w in rows]}

    def _candidates(self, room: Room) -> list[WorkerEntry]:
        return self.registry.workers(room.name)

    def _decide(self, room: str, decision: p.Decision) -> None:
        log_ = self.decisions.setdefault(room, deque(maxlen=self.config.decisions_kept))
        log_.append(decision)
        self.metrics.routes[decision.outcome] += 1

    async def _route(self, conn: Conn, msg: p.Route) -> Reply:
        started = time.perf_counter()
        room = self.store.rooms[conn.room]
        req = p.Requirements(pipelines=msg.pipelines, required_storage=msg.required_storage,
                             min_gpu_memory_mb=msg.min_gpu_memory_mb, strict=msg.strict,
                             worker=msg.worker, exclude=msg.exclude, models=msg.models)
        assert conn.identity is not None
        for s in self.sessions.of(room.name, conn.identity):
            if s.route_id == msg.id and s.client == conn.identity and s.routed is not None:
                return s.routed  # a retry after a lost reply: same session, no second slot
        queue = self.queues.setdefault(room.name, [])
        if any(q.conn is conn and q.route_id == msg.id for q in queue):
            raise SignalingError(f"route request {msg.id!r} is already queued",
                                 code=Codes.INVALID_MESSAGE, hint="use a fresh request id")
        cands = self._candidates(room)
        never = routing.why_never(cands, req, room.policy, room.name)
        if never is not None and (req.worker is not None or not room.policy.wait_for_workers):
            self._decide(room.name, p.Decision(
                at=time.time(), route_id=msg.id, client=conn.identity, outcome="rejected",
                strict=routing.is_strict(req, room.policy), reason=never, requirements=req))
            self.metrics.observe_route((time.perf_counter() - started) * 1000)
            raise SignalingError(never, code=Codes.NO_MATCHING_WORKER,
                                 hint="relax the requirement, or ask the room admin to start "
                                 "a worker that meets it (rtc-annotator room workers)")
        choice = routing.choose(cands, req, room.policy)
        if (choice.worker is not None and req.worker is None
                and self._wanted_by_queue(room, choice.worker, queue)):
            # an earlier request waits for that worker: first come, first served
            choice = routing.Choice(None, None, choice.strict, 0, "earlier requests are waiting")
        if choice.worker is not None:
            reply = self._pair(conn, msg.id, req, choice, room)
            self.metrics.observe_route((time.perf_counter() - started) * 1000)
            return reply
        if len(queue) >= room.policy.max_queue:
            raise SignalingError(f"room {room.name!r} queue is full ({len(queue)} waiting)",
                                 code=Codes.QUEUE_FULL, hint="retry later")
        entry = QueuedRoute(conn, msg.id, req, time.monotonic())
        queue.append(entry)
        self._decide(room.name, p.Decision(
            at=time.time(), route_id=msg.id, client=conn.identity, outcome="queued",
            strict=routing.is_strict(req, room.policy),
            reason=choice.reason if never is None
            else f"{never}; waiting for one (policy wait_for_workers)",
            requirements=req))
        self.metrics.observe_route((time.perf_counter() - started) * 1000)
        self._announce_positions(room.name)
        return None

    def _wanted_by_queue(self, room: Room, worker: str, queue: list[QueuedRoute]) -> bool:
        entry = self.registry.get(room.name, worker)
        if entry is None or not queue:
            return False
        return any(routing.capable(entry, q.req, routing.is_strict(q.req, room.policy))
                   for q in queue)

    def _pair(self, conn: Conn, route_id: str, req: p.Requirements, choice: routing.Choice,
              room: Room) -> dict[str, Any]:
        assert choice.worker is not None and conn.identity is not None
        entry = self.registry.get(room.name, choice.worker)
        assert entry is not None
        session = self.sessions.open(room.name, entry.name, conn.identity, route_id)
        entry.add_session(session.id)
        now = time.time()
        entry.prune(now, room.policy.recent_window_s)
        entry.recent.append(now)
        decision = p.Decision(
            at=time.time(), route_id=route_id, client=conn.identity, outcome="routed",
            worker=entry.name, storage_match=choice.storage_match, strict=choice.strict,
            candidates=choice.candidates, reason=choice.reason, requirements=req)
        self._decide(room.name, decision)
        log.info("routed", ctx={"room": room.name, "client": conn.identity,
                                "worker": entry.name, "session": session.id})
        entry.conn.send({
            "type": "session_started", "session_id": session.id, "client": conn.identity,
            "client_token": conn.claims.jti if conn.claims is not None else None,
            "requirements": req.model_dump(mode="json"),
            "ice_servers": self.config.ice.servers_for(f"worker-{entry.name}")})
        session.routed = {"type": "routed", "id": route_id, "session_id": session.id,
                "worker": entry.name,
                "worker_info": entry.info(now, room.policy.recent_window_s).model_dump(
                    mode="json"),
                "ice_servers": self.config.ice.servers_for(conn.identity),
                "decision": decision.model_dump(mode="json")}
        return session.routed

    def _process_queue(self, room_name: str) -> None:
        queue = self.queues.get(room_name)
        if not queue:
            return
        room = self.store.rooms[room_name]
        waiting: list[QueuedRoute] = []
        cands = self._candidates(room)
        for q in queue:
            if q.conn.state is ConnState.CLOSED:
                continue
            choice = routing.choose(cands, q.req, room.policy)
            if choice.worker is None:
                waiting.append(q)
                continue
            q.conn.send(self._pair(q.conn, q.route_id, q.req, choice, room))
        self.queues[room_name] = waiting
        self._announce_positions(room_name)

    def _announce_positions(self, room_name: str) -> None:
        for pos, q in enumerate(self.queues.get(room_name, []), start=1):
            if q.position != pos:
                q.position = pos
                q.conn.send({"type": "queued", "id": q.route_id, "position": pos})

    async def _cancel_route(self, conn: Conn, msg: p.CancelRoute) -> Reply:
        queue = self.queues.get(conn.room, [])
        hit = [q for q in queue if q.conn is conn and q.route_id == msg.route_id]
        if not hit:
            raise SignalingError(f"no queued route request {msg.route_id!r}",
                                 code=Codes.INVALID_MESSAGE, hint="it may have been routed")
        self.queues[conn.room] = [q for q in queue if q not in hit]
        conn.send(p.error_frame(SignalingError("route request cancelled",
                                               code=Codes.ROUTE_CANCELLED), msg.route_id))
        assert conn.identity is not None
        self._decide(conn.room, p.Decision(at=time.time(), route_id=msg.route_id,
                                           client=conn.identity, outcome="cancelled",
                                           requirements=hit[0].req))
        self._announce_positions(conn.room)
        return {"type": "ok", "id": msg.id}

    # ------------------------------------------------------------------ sessions

    def _member_session(self, conn: Conn, session_id: str) -> tuple[Session, str]:
        s = self.sessions.get(conn.room, session_id)
        other = s.other(conn.identity) if (s is not None and conn.identity) else None
        if s is None or other is None:
            raise SignalingError(f"no session {session_id!r} of yours",
                                 code=Codes.SESSION_NOT_FOUND,
                                 hint="use the session_id from routed / session_started")
        return s, other

    async def _signal(self, conn: Conn, msg: p.Signal) -> Reply:
        s, other = self._member_session(conn, msg.session_id)
        target = self.by_identity.get((conn.room, other))
        if target is None:
            raise SignalingError(f"{other} is not connected right now",
                                 code=Codes.PEER_UNAVAILABLE,
                                 hint="retry after it reconnects, or end the session")
        target.send({"type": "signal", "session_id": s.id, "from": conn.identity,
                     "data": msg.data.model_dump(mode="json")})
        return {"type": "ok", "id": msg.id} if msg.id is not None else None

    async def _end_session(self, conn: Conn, msg: p.EndSession) -> Reply:
        s, _ = self._member_session(conn, msg.session_id)
        assert conn.identity is not None
        self._finish(s, msg.reason or "ended", by=conn.identity)
        self._process_queue(conn.room)
        return {"type": "ok", "id": msg.id}

    def _finish(self, s: Session, reason: str, *, by: str) -> None:
        """End a session, free the worker's slot, tell the other member."""
        self.sessions.end(s, reason)
        entry = self.registry.get(s.room, s.worker) or self._orphans.get((s.room, s.worker))
        if entry is not None:
            entry.drop_session(s.id)
        for member in s.members():
            if member == by:
                continue
            target = self.by_identity.get((s.room, member))
            if target is not None:
                target.send({"type": "session_ended", "session_id": s.id, "reason": reason,
                             "by": by})

    # ------------------------------------------------------------------ admin

    async def _issue_token(self, conn: Conn, msg: p.IssueToken) -> Reply:
        token, claims = tokens.issue(self.store.signing_key, room=conn.room, role=msg.role,
                                     ttl_s=msg.ttl_s, label=msg.label)
        await self._record(claims)
        log.info("token issued", ctx={"room": conn.room, "role": msg.role, "jti": claims.jti,
                                      "by": conn.identity})
        return {"type": "token", "id": msg.id, "token": token, "token_id": claims.jti,
                "role": claims.role, "room": claims.room, "expires_at": claims.exp}

    async def _record(self, claims: Claims) -> None:
        await self.store.record_issue(claims.jti, claims.room, claims.role, claims.iat,
                                      claims.exp, claims.label)

    async def _revoke_token(self, conn: Conn, msg: p.RevokeToken) -> Reply:
        if self.store.issued.get(msg.token_id) != conn.room:
            raise SignalingError(f"no token {msg.token_id!r} in room {conn.room!r}",
                                 code=Codes.TOKEN_NOT_FOUND,
                                 hint="give the token_id printed when the token was issued")
        await self.store.revoke(conn.room, msg.token_id)
        closed = 0
        for other in list(self.conns):
            if other.claims is not None and other.claims.jti == msg.token_id:
                other.send({"type": "error", "code": Codes.TOKEN_REVOKED,
                            "message": "token has been revoked",
                            "hint": "ask the room admin for a new token"})
                other.close(4003, "token revoked")
                self.connection_closed(other)
                closed += 1
        # the token can never come back: end its absent identities' sessions, free their names
        freed = [key for key, jti in self.owners.items()
                 if jti == msg.token_id and key[0] == conn.room and key not in self.by_identity]
        for room, identity in freed:
            self._forget(room, identity, reason=f"{identity} token revoked")
        log.info("token revoked", ctx={"room": conn.room, "jti": msg.token_id, "closed": closed,
                                       "identities_freed": len(freed)})
        return {"type": "ok", "id": msg.id, "closed_connections": closed}

    async def _get_policy(self, conn: Conn, msg: p.GetPolicy) -> Reply:
        policy = self.store.rooms[conn.room].policy
        return {"type": "policy", "id": msg.id, "policy": policy.model_dump(mode="json")}

    async def _set_policy(self, conn: Conn, msg: p.SetPolicy) -> Reply:
        await self.store.set_policy(conn.room, msg.policy)
        self._process_queue(conn.room)
        return {"type": "policy", "id": msg.id, "policy": msg.policy.model_dump(mode="json")}

    async def _drain(self, conn: Conn, msg: p.Drain) -> Reply:
        await self.store.set_drained(conn.room, msg.worker, msg.drain)
        entry = self.registry.get(conn.room, msg.worker)
        if entry is not None:
            entry.draining = msg.drain
        if not msg.drain:
            self._process_queue(conn.room)
        return {"type": "ok", "id": msg.id, "worker": msg.worker, "draining": msg.drain,
                "online": entry is not None}

    async def _decisions(self, conn: Conn, msg: p.Decisions) -> Reply:
        rows = list(self.decisions.get(conn.room, ()))[-msg.limit:]
        return {"type": "decisions", "id": msg.id,
                "decisions": [d.model_dump(mode="json") for d in rows]}

    async def _route_queue(self, conn: Conn, msg: p.RouteQueue) -> Reply:
        now = time.monotonic()
        rows = [p.QueuedRequest(route_id=q.route_id, client=q.conn.identity or "?",
                                position=i, waiting_s=round(now - q.enqueued_at, 3),
                                requirements=q.req)
                for i, q in enumerate(self.queues.get(conn.room, []), start=1)]
        return {"type": "route_queue", "id": msg.id,
                "queue": [r.model_dump(mode="json") for r in rows]}

    async def _create_room(self, conn: Conn, msg: p.CreateRoom) -> Reply:
        room = await self.store.create_room(msg.name)
        if room is None:
            raise SignalingError(f"room {msg.name!r} exists already", code=Codes.ROOM_EXISTS,
                                 hint="pick another name, or use that room's admin token")
        token, claims = tokens.issue(self.store.signing_key, room=msg.name, role="admin",
                                     ttl_s=msg.ttl_s, label="room creator")
        await self._record(claims)
        log.info("room created", ctx={"room": msg.name})
        return {"type": "room_created", "id": msg.id, "room": msg.name, "token": token,
                "token_id": claims.jti, "expires_at": claims.exp}

    # ------------------------------------------------------------------ metrics

    def gauges(self) -> dict[str, float]:
        return {
            "connections": len(self.conns),
            "workers": self.registry.count(),
            "sessions": len(self.sessions),
            "queue_length": sum(len(q) for q in self.queues.values()),
            "rooms": len(self.store.rooms),
        }
