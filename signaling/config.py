"""Server settings: one dataclass, every timer a parameter so tests can shorten it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rtc_annotator.protocol.signaling import MAX_FRAME_BYTES
from signaling.turn import IceConfig


@dataclass
class ServerConfig:
    """Everything ``python -m signaling`` can set."""

    state_path: Path
    """SQLite file with rooms, policies, revoked tokens and the signing key."""
    admin_secret: str
    """Server admin secret: lets `room create` make rooms."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = 8765
    """Port (0: any free port; the bound port is in ``SignalingServer.port``)."""
    heartbeat_s: float = 5.0
    """Heartbeat interval advertised to peers in ``welcome``."""
    gone_after_s: float = 12.0
    """A connection silent this long is closed; its worker is removed from the room."""
    session_grace_s: float = 12.0
    """How long sessions of a disconnected member wait for it to come back before ending."""
    sweep_interval_s: float = 1.0
    """How often liveness and grace periods are checked."""
    hello_timeout_s: float = 10.0
    """A connection that has not authenticated by then is closed."""
    handshake_timeout_s: float = 10.0
    """A TCP connection whose HTTP request (the websocket upgrade) has not arrived whole by then
    is closed: a client sending its headers byte by byte cannot hold a connection open."""
    max_frame_bytes: int = MAX_FRAME_BYTES
    """Largest accepted frame."""
    rate_per_s: float = 50.0
    """Frames per second allowed per connection (token bucket rate)."""
    rate_burst: float = 200.0
    """Token bucket size."""
    max_outbox: int = 1000
    """Frames queued for a slow peer before it is disconnected."""
    decisions_kept: int = 200
    """Routing decisions kept per room."""
    shutdown_retry_after_s: float = 1.0
    """Told to peers in the ``reconnect`` frame at shutdown."""
    ice: IceConfig = field(default_factory=IceConfig)
    """STUN/TURN servers handed out with sessions."""
    cert: Path | None = None
    """TLS certificate (PEM); with ``key`` the server speaks wss:// itself."""
    key: Path | None = None
    """TLS private key (PEM)."""
