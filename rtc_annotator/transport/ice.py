"""ICE configuration: the configured server list and the host-candidate restriction.

aiortc falls back to a public STUN server when ``iceServers`` is ``None``, so
:func:`rtc_configuration` always passes an explicit list (empty by default).

Host restriction: aioice's ``Connection.gather_candidates()`` asks the module function
``aioice.ice.get_host_addresses()`` for every local address *except* 127.0.0.1 and hands that
list to ``Connection.get_component_candidates(component, addresses)``. Neither aioice 0.13 nor
aiortc 1.16 takes an option for it. :func:`restrict_host_candidates` therefore wraps
``get_component_candidates`` *on the one Connection object of each ICE gatherer of one peer
connection* so it binds exactly the configured addresses. Nothing global is patched: other peer
connections in the process are unaffected. It must run after the transports exist and before
``setLocalDescription()`` gathers (offerer: after ``createDataChannel``; answerer: after
``setRemoteDescription``). The private attributes touched are ``RTCIceGatherer._connection``
and, for :func:`selected_pairs`, aioice's ``Connection._nominated`` (neither library exposes the
selected pair).

Selected pair: once ICE completes, :func:`restrict_host_candidates` has the peer connection log
``ice pair selected`` with the type and address of both candidates (``relay`` means the link
goes through a TURN server), so an operator sees from the logs whether a link is direct or
relayed. TURN itself needs no workaround here: see ``docs/nat.md`` for the coturn options.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from rtc_annotator.config import IceSettings
from rtc_annotator.errors import ConfigError
from rtc_annotator.logs import get_logger

_log = get_logger(__name__)


def rtc_configuration(
    ice: IceSettings, extra_servers: Sequence[dict[str, Any]] | None = None
) -> RTCConfiguration:
    """RTCConfiguration from ``[ice] servers`` plus servers handed out by the signaling server.

    ``extra_servers`` items look like ``{"urls": [...], "username": ..., "credential": ...}``.
    """
    servers = [
        RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
        for s in ice.servers
    ]
    for item in extra_servers or ():
        urls = item.get("urls")
        servers.append(
            RTCIceServer(
                urls=[urls] if isinstance(urls, str) else list(urls or []),
                username=item.get("username"),
                credential=item.get("credential"),
            )
        )
    return RTCConfiguration(iceServers=servers)


def check_host_addresses(addresses: Sequence[str]) -> list[str]:
    """Validate ``[ice] host_addresses`` (literal IPv4/IPv6 addresses)."""
    out = []
    for addr in addresses:
        try:
            out.append(str(ipaddress.ip_address(addr)))
        except ValueError:
            raise ConfigError(
                f"[ice] host_addresses: {addr!r} is not an IP address",
                hint="list literal local addresses such as 127.0.0.1",
            ) from None
    return out


def _gatherers(pc: RTCPeerConnection) -> list[Any]:
    found = []
    sctp = pc.sctp
    if sctp is not None:
        found.append(sctp.transport.transport.iceGatherer)
    for transceiver in pc.getTransceivers():
        sender = transceiver.sender
        if sender.transport is not None:
            found.append(sender.transport.transport.iceGatherer)
    return found


SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
"""SO_RCVBUF/SO_SNDBUF asked for on each ICE UDP socket (the kernel caps it at rmem_max)."""


def _grow_buffers(protocols: list[Any], size: int) -> None:
    for protocol in protocols:
        transport = getattr(protocol, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            continue
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, size)


@dataclass(frozen=True)
class SelectedPair:
    """The candidate pair ICE nominated for one component of one ICE transport."""

    local_type: str
    """host, srflx, prflx or relay (relay: through a TURN server)."""
    local_address: str
    """ip:port of the local candidate (for relay: the address allocated on the TURN server)."""
    remote_type: str
    """Type of the remote candidate."""
    remote_address: str
    """ip:port of the remote candidate."""

    @property
    def relayed(self) -> bool:
        """True when either side sends through a TURN relay."""
        return "relay" in (self.local_type, self.remote_type)


def selected_pairs(pc: RTCPeerConnection) -> list[SelectedPair]:
    """The nominated pair of every ICE transport of ``pc`` (empty before ICE completes)."""
    out = []
    for gatherer in _gatherers(pc):
        nominated = getattr(gatherer._connection, "_nominated", {}) or {}
        for component in sorted(nominated):
            pair = nominated[component]
            local, remote = pair.local_candidate, pair.remote_candidate
            out.append(SelectedPair(local.type, f"{local.host}:{local.port}",
                                    remote.type, f"{remote.host}:{remote.port}"))
    return out


def _log_selected_pair_when_connected(pc: RTCPeerConnection) -> None:
    if getattr(pc, "_rtc_annotator_pair_logged", False):
        return
    pc._rtc_annotator_pair_logged = True  # type: ignore[attr-defined]

    def on_state() -> None:
        if pc.iceConnectionState != "completed":
            return
        for pair in selected_pairs(pc):
            _log.info("ice pair selected", ctx={
                "local_type": pair.local_type, "local": pair.local_address,
                "remote_type": pair.remote_type, "remote": pair.remote_address,
                "relayed": pair.relayed})

    pc.on("iceconnectionstatechange", on_state)


def restrict_host_candidates(
    pc: RTCPeerConnection, addresses: Sequence[str], *, socket_buffer: int = SOCKET_BUFFER_BYTES
) -> int:
    """Make every not-yet-gathered ICE gatherer of ``pc`` bind only ``addresses``, and give
    its UDP sockets ``socket_buffer`` bytes of kernel buffer.

    An empty ``addresses`` keeps aioice's choice (all addresses but loopback). The larger
    buffers matter for throughput: with the default ~200 KiB a burst of SCTP packets overflows
    the receiver's socket, the loss costs a 1 s SCTP retransmission timeout. Returns the number
    of gatherers changed. Also has ``pc`` log the selected candidate pair when ICE completes.
    """
    allowed = check_host_addresses(addresses) if addresses else None
    _log_selected_pair_when_connected(pc)
    count = 0
    for gatherer in _gatherers(pc):
        connection = gatherer._connection
        if getattr(connection, "_rtc_annotator_restricted", False):
            continue
        original = connection.get_component_candidates

        async def tuned(
            component: int,
            addresses: list[str],
            timeout: int = 5,  # noqa: ASYNC109 - aioice's own signature
            _orig: Any = original,
            _conn: Any = connection,
        ) -> Any:
            chosen = list(allowed) if allowed is not None else addresses
            candidates = await _orig(component=component, addresses=chosen, timeout=timeout)
            _grow_buffers(list(getattr(_conn, "_protocols", [])), socket_buffer)
            return candidates

        connection.get_component_candidates = tuned
        connection._rtc_annotator_restricted = True
        count += 1
    return count
