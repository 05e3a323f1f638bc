"""Request guards of ``serve``: same-origin writes, an optional access token, safe headers.

* State changes only on POST/PUT/DELETE (the routes say so); those requests are refused with
  ``CROSS_ORIGIN`` when the browser says they come from another site (``Sec-Fetch-Site``) or
  when their ``Origin`` is not this server's own.
* With a token (required by ``serve`` when it listens beyond the loopback address), every API
  request needs ``Authorization: Bearer TOKEN`` or the session cookie that ``POST /v1/login``
  sets (HttpOnly, SameSite=Strict), so a ``<video>`` element can load media without putting the
  token in a URL. The page itself and its static files need no token.
* Every answer carries a strict Content-Security-Policy (only this origin's scripts, styles,
  media), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and refuses
  framing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from aiohttp import web
from aiohttp.typedefs import Middleware

from rtc_annotator.api.errors import Handler, error_response

COOKIE = "rtc_annotator_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = ("/health", "/v1/login")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def session_value(token: str) -> str:
    """The cookie value for ``token`` (a keyed digest, so the cookie is not the token)."""
    return hmac.new(token.encode(), b"rtc-annotator serve session", hashlib.sha256).hexdigest()


def token_ok(request: web.Request, token: str) -> bool:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(),
                                                          token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), session_value(token).encode())


def cross_origin(request: web.Request) -> str | None:
    """Why a state-changing request is refused, or None when it is same-origin."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {site[:40]!r}"
    origin = request.headers.get("Origin")
    if origin is not None:
        own = f"{request.scheme}://{request.host}"
        if origin != own:
            return f"Origin {origin[:100]!r} is not {own[:100]!r}"
    return None


def _is_api(path: str) -> bool:
    return path.startswith("/v1/") or path == "/openapi.json"


def security_middleware(token: str | None) -> Middleware:
    """The guard for a server with (or without) an access token."""
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in SAFE_METHODS:
            why = cross_origin(request)
            if why is not None:
                return error_response(
                    "CROSS_ORIGIN", f"refused a cross-origin {request.method}: {why}",
                    "state changes are accepted only from this server's own page")
        if (token is not None and _is_api(request.path) and request.path not in OPEN_PATHS
                and not token_ok(request, token)):
            return error_response(
                "UNAUTHORIZED", "this server needs its access token",
                "send Authorization: Bearer TOKEN, or log in on the page (POST /v1/login)")
        return await handler(request)

    return guard


async def safe_headers(request: web.Request, resp: web.StreamResponse) -> None:
    """``on_response_prepare``: the headers every answer carries (streamed ones too)."""
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Cache-Control", "no-store")
