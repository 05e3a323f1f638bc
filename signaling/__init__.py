"""The signaling server: rooms, tokens, worker registry, storage-aware routing and SDP/ICE relay.

Modules: ``app`` (aiohttp, bytes only), ``hub`` (all message handling), ``rooms`` (SQLite room
state), ``tokens``, ``registry``, ``routing`` (pure policy), ``sessions``, ``turn``, ``metrics``,
``ratelimit``, ``config``. Run it with ``python -m signaling``; see docs/signaling.md.
"""

from signaling.app import SignalingServer
from signaling.config import ServerConfig

__all__ = ["ServerConfig", "SignalingServer"]
