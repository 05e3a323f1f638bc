"""ICE server list with short-lived TURN credentials (coturn ``use-auth-secret`` scheme).

coturn's REST-API scheme: user name ``"<expiry unix time>:<user id>"``, password
``base64(HMAC-SHA1(shared secret, user name))``. coturn recomputes the password from its own
``static-auth-secret`` and refuses the name once the expiry has passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any


def turn_credentials(secret: str, user_id: str, *, ttl_s: int,
                     now: float | None = None) -> tuple[str, str]:
    """Return ``(username, password)`` valid for ``ttl_s`` seconds."""
    expiry = int((time.time() if now is None else now) + ttl_s)
    username = f"{expiry}:{user_id}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class IceConfig:
    """What the server hands out as ``ice_servers``."""

    stun_urls: tuple[str, ...] = ()
    """stun: URLs given as they are (none by default: no public STUN)."""
    turn_urls: tuple[str, ...] = ()
    """turn:/turns: URLs that get short-lived credentials."""
    turn_secret: str | None = None
    """coturn static-auth-secret; TURN is left out when unset."""
    turn_ttl_s: int = 3600
    """Lifetime of the credentials."""
    extra: tuple[dict[str, Any], ...] = field(default=())
    """Further entries given as they are."""

    def servers_for(self, user_id: str, *, now: float | None = None) -> list[dict[str, Any]]:
        """The RTCIceServer list (``urls``, ``username``, ``credential``) for one peer."""
        out: list[dict[str, Any]] = []
        if self.stun_urls:
            out.append({"urls": list(self.stun_urls)})
        if self.turn_urls and self.turn_secret:
            user, password = turn_credentials(self.turn_secret, user_id, ttl_s=self.turn_ttl_s,
                                              now=now)
            out.append({"urls": list(self.turn_urls), "username": user, "credential": password})
        out.extend(dict(e) for e in self.extra)
        return out
