"""Room tokens: HMAC-SHA256-signed claims (room, role, expiry, token id).

Format: ``rtca1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(key, "rtca1." + claims))>``.
The role and room of a connection come only from here, never from a message. Revocation is by
token id (``jti``), checked against the room store on every ``hello``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass

from rtc_annotator.protocol.signaling import ROLES, Codes, SignalingError

PREFIX = "rtca1"


@dataclass(frozen=True)
class Claims:
    """What a token grants."""

    room: str
    """Room the bearer belongs to."""
    role: str
    """worker, client or admin."""
    exp: float
    """Unix time after which the token is refused."""
    jti: str
    """Token id, used to revoke it."""
    iat: float = 0.0
    """Unix time of issue."""
    label: str = ""
    """Free text from the issuer (shown in logs)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, *, room: str, role: str, ttl_s: float, label: str = "",
          now: float | None = None) -> tuple[str, Claims]:
    """Sign a new token; return it with its claims."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    t = time.time() if now is None else now
    claims = Claims(room=room, role=role, exp=t + ttl_s, jti=secrets.token_hex(8), iat=t,
                    label=label)
    body = _b64(json.dumps(asdict(claims), separators=(",", ":"), sort_keys=True).encode())
    signed = f"{PREFIX}.{body}"
    sig = _b64(hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest())
    return f"{signed}.{sig}", claims


def verify(key: bytes, token: str, *, now: float | None = None) -> Claims:
    """Check signature and expiry; raise :class:`SignalingError` (TOKEN_*) when refused."""
    bad = SignalingError("token is not valid for this server", code=Codes.TOKEN_INVALID,
                         hint="ask the room admin for a new token (rtc-annotator room token)")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise bad
    signed = f"{parts[0]}.{parts[1]}"
    try:
        expected = hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(parts[2])):
            raise bad
        raw = json.loads(_unb64(parts[1]))
        claims = Claims(**raw)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise bad from None
    if claims.role not in ROLES:
        raise bad
    t = time.time() if now is None else now
    if t >= claims.exp:
        raise SignalingError("token has expired", code=Codes.TOKEN_EXPIRED,
                             hint="ask the room admin for a new token (rtc-annotator room token)")
    return claims
