"""PeerLink: one aiortc peer connection with a ``control`` and a ``bulk`` data channel.

* ``control``: reliable, ordered; msgpack maps (:mod:`rtc_annotator.protocol.peer`).
* ``bulk``: reliable, ordered; binary chunk frames. Separate, so control messages never queue
  behind megabytes of file data. Flow control uses ``bufferedAmountLowThreshold`` and the
  ``bufferedamountlow`` event, never polling.

Offer/answer go through a :class:`Signaler` (the signaling client's ``send_signal`` /
``next_signal`` in production, :func:`signaler_pair` in tests). aiortc gathers all candidates
before ``setLocalDescription`` returns, so one offer and one answer carry everything.

After the channels open, both sides send ``HELLO`` and agree on the highest common version.
Then each side sends ``AUTH_CHALLENGE`` (a fresh nonce) and answers the other's with
``AUTH_PROOF``: its long-term key signed over this connection's DTLS fingerprints, the session id
and that nonce (:mod:`rtc_annotator.protocol.auth`). A proof that does not verify ends the
connection (``PEER_AUTH_FAILED``); a client with ``require_vouched`` also refuses a worker whose
key the room admin did not vouch for (``PEER_NOT_TRUSTED``).
Application heartbeats (``PING`` every ``heartbeat_s``) notice a silent peer within
``dead_after_s`` (aiortc's own consent check takes about 30 s); the link then closes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from pydantic import BaseModel

from rtc_annotator import __version__
from rtc_annotator.config import IceSettings
from rtc_annotator.errors import ProtocolError, RtcAnnotatorError
from rtc_annotator.logs import get_logger
from rtc_annotator.protocol import auth
from rtc_annotator.protocol import peer as proto
from rtc_annotator.transport.ice import restrict_host_candidates, rtc_configuration
from rtc_annotator.trust import LocalIdentity, TrustPolicy

_ids = itertools.count(1)


class LinkClosed(RtcAnnotatorError):
    """The peer connection is gone (closed, failed, or the peer went silent)."""

    code = "PEER_GONE"
    default_hint = "reconnect and attach to the job by id"


class ConnectFailed(RtcAnnotatorError):
    """The peer connection could not be established."""

    code = "PEER_CONNECT_FAILED"
    default_hint = "check [ice] host_addresses and servers; both peers must reach each other"


class Signaler(Protocol):
    """Carries offer/answer dicts between the two peers (the signaling relay)."""

    async def send(self, data: dict[str, Any]) -> None: ...

    async def recv(self) -> dict[str, Any]: ...


class QueueSignaler:
    """In-process :class:`Signaler` over two asyncio queues (stands in for the relay only)."""

    def __init__(self, inbox: asyncio.Queue[dict[str, Any]],
                 outbox: asyncio.Queue[dict[str, Any]]) -> None:
        self._inbox = inbox
        self._outbox = outbox

    async def send(self, data: dict[str, Any]) -> None:
        await self._outbox.put(data)

    async def recv(self) -> dict[str, Any]:
        return await self._inbox.get()


def signaler_pair() -> tuple[QueueSignaler, QueueSignaler]:
    a: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    b: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    return QueueSignaler(a, b), QueueSignaler(b, a)


class CallbackSignaler:
    """Adapts a pair of callables (e.g. a signaling client's ``send_signal`` / ``next_signal``)."""

    @classmethod
    def for_session(cls, client: Any, session_id: str) -> CallbackSignaler:
        """Signaler over ``rtc_annotator.signaling_client``'s relay for one session."""
        return cls(lambda data: client.send_signal(session_id, data),
                   lambda: client.next_signal(session_id), session_id=session_id)

    def __init__(self, send: Callable[[dict[str, Any]], Any],
                 recv: Callable[[], Any], *, session_id: str = "") -> None:
        self._send = send
        self._recv = recv
        self.session_id = session_id
        """The signaling session (used by the auth proofs when LinkOptions names none)."""

    async def send(self, data: dict[str, Any]) -> None:
        await self._send(data)

    async def recv(self) -> dict[str, Any]:
        return dict(await self._recv())


@dataclass
class LinkOptions:
    """Tunables of one link; tests shorten the timers."""

    ice: IceSettings = field(default_factory=IceSettings)
    """[ice] settings: servers and host_addresses."""
    extra_ice_servers: Sequence[dict[str, Any]] = ()
    """ICE servers handed out by the signaling server."""
    heartbeat_s: float = 2.0
    """Seconds between PINGs."""
    dead_after_s: float = 10.0
    """A peer silent this long is declared gone."""
    connect_timeout_s: float = 30.0
    """Upper bound for ICE + DTLS + SCTP + HELLO."""
    bulk_low_threshold: int = 1024 * 1024
    """bufferedAmountLowThreshold of the bulk channel."""
    bulk_high_water: int = 4 * 1024 * 1024
    """send_bulk waits while more than this is buffered."""
    max_message_bytes: int = proto.MAX_MESSAGE_BYTES
    """Largest control message accepted."""
    session_id: str = ""
    """Signaling session id of this connection (part of what the auth proofs sign)."""
    identity: LocalIdentity | None = None
    """This side's key (and vouch) to prove; None: prove nothing."""
    trust: TrustPolicy = field(default_factory=TrustPolicy)
    """What the client demands of the worker's proof."""


BulkHandler = Callable[[bytes], None]


class PeerLink:
    """A connected peer: send/recv control messages, send/receive bulk frames."""

    def __init__(self, pc: RTCPeerConnection, control: RTCDataChannel, bulk: RTCDataChannel,
                 options: LinkOptions, role: Literal["client", "worker"], name: str) -> None:
        self.id = next(_ids)
        self.pc = pc
        self.control = control
        self.bulk = bulk
        self.options = options
        self.role = role
        self.name = name
        self.peer_hello: proto.Hello | None = None
        self.peer_key: str | None = None
        """The peer's public key, proven over this connection (None: it proved none)."""
        self.peer_vouch: auth.Vouch | None = None
        """The admin's vouch for ``peer_key``, when checked against [trust] admin_public_keys."""
        self.peer_identity: str | None = None
        """Who the signaling server says the peer is (set by the caller; jobs belong to it)."""
        self.peer_proof: proto.AuthProof | None = None
        self.version = 0
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.bulk_sent_bytes = 0
        self.bulk_received_bytes = 0
        self._incoming: asyncio.Queue[proto.PeerMessage | None] = asyncio.Queue()
        self._hello: asyncio.Future[proto.Hello] = asyncio.get_running_loop().create_future()
        loop = self._hello.get_loop()
        self._challenge: asyncio.Future[proto.AuthChallenge] = loop.create_future()
        self._proof: asyncio.Future[proto.AuthProof] = loop.create_future()
        self._bulk_low = asyncio.Event()
        self._bulk_handler: BulkHandler | None = None
        self._loop = asyncio.get_running_loop()
        self._last_rx = self._loop.time()
        self._tasks: list[asyncio.Task[None]] = []
        self._pc_closing: asyncio.Task[None] | None = None
        self._close_callbacks: list[Callable[[PeerLink], None]] = []
        self._log = get_logger(__name__, link=self.id, role=role)
        bulk.bufferedAmountLowThreshold = options.bulk_low_threshold
        bulk.on("bufferedamountlow", self._bulk_low.set)
        control.on("message", self._on_control)
        bulk.on("message", self._on_bulk)
        control.on("close", lambda: self._schedule_close("control channel closed"))
        bulk.on("close", lambda: self._schedule_close("bulk channel closed"))
        pc.on("connectionstatechange", self._on_state)

    # ------------------------------------------------------------------ connect

    @classmethod
    async def connect(cls, signaler: Signaler, *, offer: bool, role: Literal["client", "worker"],
                      name: str = "", options: LinkOptions | None = None) -> PeerLink:
        """Establish the connection (offerer or answerer) and exchange HELLO."""
        opts = options or LinkOptions()
        signaled_session = getattr(signaler, "session_id", None)
        if not opts.session_id and isinstance(signaled_session, str) and signaled_session:
            opts = replace(opts, session_id=signaled_session)
        pc = RTCPeerConnection(rtc_configuration(opts.ice, opts.extra_ice_servers))
        try:
            async with asyncio.timeout(opts.connect_timeout_s):
                if offer:
                    control = pc.createDataChannel("control", ordered=True)
                    bulk = pc.createDataChannel("bulk", ordered=True)
                    restrict_host_candidates(pc, opts.ice.host_addresses)
                    await pc.setLocalDescription(await pc.createOffer())
                    await signaler.send(_sdp(pc))
                    answer = await signaler.recv()
                    await pc.setRemoteDescription(_description(answer, "answer"))
                    link = cls(pc, control, bulk, opts, role, name)
                    await _wait_open(control, bulk)
                else:
                    channels: dict[str, RTCDataChannel] = {}
                    both = asyncio.Event()
                    early: list[tuple[str, Any]] = []

                    @pc.on("datachannel")
                    def on_channel(channel: RTCDataChannel) -> None:
                        channels[channel.label] = channel
                        # Buffer messages that arrive before the link object exists.
                        channel.on("message", lambda m, lbl=channel.label: early.append((lbl, m)))
                        if {"control", "bulk"} <= channels.keys():
                            both.set()

                    remote = await signaler.recv()
                    await pc.setRemoteDescription(_description(remote, "offer"))
                    restrict_host_candidates(pc, opts.ice.host_addresses)
                    await pc.setLocalDescription(await pc.createAnswer())
                    await signaler.send(_sdp(pc))
                    await both.wait()
                    for ch in channels.values():
                        ch.remove_all_listeners("message")
                    link = cls(pc, channels["control"], channels["bulk"], opts, role, name)
                    for label, data in early:
                        (link._on_control if label == "control" else link._on_bulk)(data)
                    await _wait_open(link.control, link.bulk)
                await link._handshake()
        except (TimeoutError, RtcAnnotatorError, OSError, ValueError) as exc:
            await pc.close()
            if isinstance(exc, RtcAnnotatorError):
                raise
            raise ConnectFailed(f"peer connection failed ({type(exc).__name__}: {exc})") from None
        link._tasks.append(asyncio.create_task(link._heartbeat()))
        link._log.info("peer connected", ctx={"peer": link.peer_hello and link.peer_hello.name,
                                               "version": link.version})
        return link

    async def _handshake(self) -> None:
        await self.send(proto.Hello(versions=list(proto.SUPPORTED_VERSIONS), role=self.role,
                                    name=self.name, software=__version__))
        hello = await self._hello
        self.peer_hello = hello
        try:
            self.version = proto.negotiate_version(proto.SUPPORTED_VERSIONS, hello.versions)
        except ProtocolError as exc:
            with contextlib.suppress(RtcAnnotatorError):
                await self.send(proto.Error(error=exc.envelope()))
            raise
        try:
            await self._authenticate()
        except (auth.AuthFailed, auth.PeerNotTrusted) as exc:
            self._log.warning("peer refused", ctx={"code": exc.code, "error": exc.message})
            with contextlib.suppress(RtcAnnotatorError):
                await self.send(proto.Error(error=exc.envelope()))
            raise

    def _binding(self) -> auth.Binding:
        return auth.Binding(session_id=self.options.session_id,
                            local_fp=auth.sdp_fingerprints(self.pc.localDescription.sdp),
                            remote_fp=auth.sdp_fingerprints(self.pc.remoteDescription.sdp))

    def _make_proof(self, challenge: proto.AuthChallenge) -> proto.AuthProof:
        """Our answer to the peer's challenge (tests override it to replay a stolen proof)."""
        me = self.options.identity
        if me is None:
            return proto.AuthProof()
        nonce = auth.unb64(challenge.nonce, what="challenge nonce")
        return proto.AuthProof(public_key=me.public_key, vouch=me.vouch,
                               signature=auth.make_proof(me.key, self.role, self._binding(), nonce))

    async def _authenticate(self) -> None:
        """Challenge the peer, answer its challenge, check its proof (see protocol.auth)."""
        nonce = auth.new_nonce()
        await self.send(proto.AuthChallenge(nonce=auth.b64(nonce)))
        await self.send(self._make_proof(await self._challenge))
        proof = await self._proof
        self.peer_proof = proof
        peer_role: Literal["client", "worker"] = "worker" if self.role == "client" else "client"
        if proof.public_key is not None:
            auth.verify_proof(proof.public_key, proof.signature, peer_role, self._binding(), nonce)
            self.peer_key = proof.public_key
        if self.role != "client":
            return  # workers take any client; jobs belong to the client's identity
        policy = self.options.trust
        if not policy.require_vouched:
            self._log.info("worker identity not checked against a vouch: "
                           "[trust] require_vouched is off",
                           ctx={"worker_key": self.peer_key or "-"})
            return
        if proof.public_key is None:
            raise auth.PeerNotTrusted("the worker proved no key and [trust] require_vouched is on")
        if proof.vouch is None:
            raise auth.PeerNotTrusted(f"the worker's key {proof.public_key[:20]}... carries no "
                                      "vouch from the room admin")
        self.peer_vouch = auth.check_vouch(proof.vouch, public_key=proof.public_key,
                                           admin_keys=policy.admin_public_keys, room=policy.room)
        self._log.info("worker key vouched for", ctx={"worker": self.peer_vouch.name,
                                                      "worker_key": self.peer_key})

    # ------------------------------------------------------------------ control channel

    def _on_control(self, data: Any) -> None:
        self._last_rx = self._loop.time()
        try:
            msg = proto.decode(data, max_size=self.options.max_message_bytes)
        except ProtocolError as exc:
            self._log.warning("bad control message dropped", ctx={"error": exc.message})
            with contextlib.suppress(Exception):
                self.control.send(proto.encode(proto.Error(error=exc.envelope())))
            return
        if isinstance(msg, proto.Ping):
            with contextlib.suppress(Exception):
                self.control.send(proto.encode(proto.Pong(nonce=msg.nonce)))
            return
        if isinstance(msg, proto.Pong):
            return
        if isinstance(msg, proto.Hello):
            if not self._hello.done():
                self._hello.set_result(msg)
            return
        if isinstance(msg, proto.AuthChallenge):
            if not self._challenge.done():
                self._challenge.set_result(msg)
            return
        if isinstance(msg, proto.AuthProof):
            if not self._proof.done():
                self._proof.set_result(msg)
            return
        if isinstance(msg, proto.Error):
            self._log.warning("peer reported error", ctx={"code": msg.error.code,
                                                          "error": msg.error.message})
            for fut in (self._hello, self._challenge, self._proof):
                if not fut.done():
                    fut.set_exception(ProtocolError(msg.error.message, code=msg.error.code,
                                                    hint=msg.error.hint))
                    fut.exception()  # a later stage may never await it
            return
        self._incoming.put_nowait(msg)

    async def send(self, message: BaseModel) -> None:
        """Send one control message; :class:`LinkClosed` when the link is gone."""
        if self.closed.is_set() or self.control.readyState != "open":
            raise LinkClosed(f"cannot send {getattr(message, 'type', '?')}: link closed "
                             f"({self.close_reason or 'not open'})")
        try:
            self.control.send(proto.encode(message))
        except Exception as exc:
            raise LinkClosed(f"control send failed ({type(exc).__name__})") from None

    async def recv(self) -> proto.PeerMessage:
        """Next control message (PING/PONG/HELLO are handled here); :class:`LinkClosed` at end."""
        if self.closed.is_set() and self._incoming.empty():
            raise LinkClosed(f"link closed ({self.close_reason})")
        msg = await self._incoming.get()
        if msg is None:
            self._incoming.put_nowait(None)
            raise LinkClosed(f"link closed ({self.close_reason})")
        return msg

    # ------------------------------------------------------------------ bulk channel

    def set_bulk_handler(self, handler: BulkHandler | None) -> None:
        self._bulk_handler = handler

    def _on_bulk(self, data: Any) -> None:
        self._last_rx = self._loop.time()
        if isinstance(data, str):
            self._log.warning("text frame on bulk channel dropped")
            return
        self.bulk_received_bytes += len(data)
        if self._bulk_handler is not None:
            self._bulk_handler(data)

    async def send_bulk(self, frame: bytes) -> None:
        """Queue one bulk frame, first waiting while more than ``bulk_high_water`` is buffered."""
        while self.bulk.bufferedAmount > self.options.bulk_high_water:
            self._bulk_low.clear()
            waiter = asyncio.ensure_future(self._bulk_low.wait())
            closer = asyncio.ensure_future(self.closed.wait())
            try:
                await asyncio.wait({waiter, closer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                closer.cancel()
            if self.closed.is_set():
                break
        if self.closed.is_set() or self.bulk.readyState != "open":
            raise LinkClosed(f"bulk channel closed ({self.close_reason or 'not open'})")
        try:
            self.bulk.send(frame)
        except Exception as exc:
            raise LinkClosed(f"bulk send failed ({type(exc).__name__})") from None
        self.bulk_sent_bytes += len(frame)

    # ------------------------------------------------------------------ liveness and close

    async def _heartbeat(self) -> None:
        nonce = 0
        while not self.closed.is_set():
            await asyncio.sleep(min(self.options.heartbeat_s, self.options.dead_after_s / 2))
            silent = self._loop.time() - self._last_rx
            if silent > self.options.dead_after_s:
                self._log.warning("peer silent, closing", ctx={"silent_s": round(silent, 1)})
                self._schedule_close(f"peer silent for {silent:.1f} s")
                return
            nonce += 1
            with contextlib.suppress(LinkClosed):
                await self.send(proto.Ping(nonce=nonce))

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._schedule_close(f"connection {self.pc.connectionState}")

    def _schedule_close(self, reason: str) -> None:
        if not self.closed.is_set():
            self._mark_closed(reason)
            self._close_pc()

    def _close_pc(self) -> asyncio.Task[None]:
        # One task does the closing; cancelling a caller must never interrupt pc.close() midway
        # (aiortc would then never finish closing and later close() calls would wait forever).
        if self._pc_closing is None:
            self._pc_closing = self._loop.create_task(self.pc.close())
        return self._pc_closing

    def _mark_closed(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        self._bulk_low.set()
        self._incoming.put_nowait(None)
        for fut in (self._hello, self._challenge, self._proof):
            if not fut.done():
                fut.set_exception(LinkClosed(f"link closed during handshake ({reason})"))
                # Nobody may await it any more (connect timed out): mark it retrieved.
                fut.exception()
        self._log.info("link closed", ctx={"reason": reason})
        for cb in self._close_callbacks:
            cb(self)
        self._close_callbacks.clear()

    def on_close(self, callback: Callable[[PeerLink], None]) -> None:
        if self.closed.is_set():
            callback(self)
        else:
            self._close_callbacks.append(callback)

    async def close(self, reason: str = "closed locally") -> None:
        self._mark_closed(reason)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await asyncio.shield(self._close_pc())


def _sdp(pc: RTCPeerConnection) -> dict[str, Any]:
    desc = pc.localDescription
    # "kind" is what the signaling relay routes on (offer/answer/candidate/bye).
    return {"kind": desc.type, "type": desc.type, "sdp": desc.sdp}


def _description(data: dict[str, Any], expected: str) -> RTCSessionDescription:
    kind = data.get("kind")
    if kind == "bye":
        raise ConnectFailed(f"the peer left the session before connecting "
                            f"({data.get('reason', 'no reason given')})")
    if kind != expected or not isinstance(data.get("sdp"), str):
        raise ProtocolError(f"expected an SDP {expected} from the signaling relay, got {kind!r}",
                            hint="both peers must run the same connect sequence")
    return RTCSessionDescription(sdp=data["sdp"], type=expected)


async def _wait_open(*channels: RTCDataChannel) -> None:
    for ch in channels:
        if ch.readyState == "open":
            continue
        opened = asyncio.Event()
        ch.on("open", opened.set)
        if ch.readyState != "open":
            await opened.wait()
