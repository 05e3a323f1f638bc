"""The room dashboard's routes: ``serve`` talks to the signaling server with an admin token.

The page sends the room admin token in the ``X-Room-Token`` header of each request (never in a
URL; it is kept in the page's memory only and never logged here). Each request opens one
signaling connection with that token, checks that the server calls it an admin of a room, does
its work with the same messages as ``rtc-annotator room ...`` and closes. Without a token, or
with a token that is not a valid admin token, the answer is an error and nothing of the room.

The route queue is read from the room's decision log: a request whose last decision is
``queued`` still waits (the signaling server announces positions to the waiting clients only).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from rtc_annotator.api.errors import BadRequest
from rtc_annotator.config import Settings
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.protocol.signaling import Codes, SignalingError
from rtc_annotator.signaling_client import SignalingClient

HEADER = "X-Room-Token"
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)


class NoRoomToken(RtcAnnotatorError):
    code = "UNAUTHORIZED"
    default_hint = f"enter the room admin token on the page (sent as the {HEADER} header)"


class NotAdmin(RtcAnnotatorError):
    code = "FORBIDDEN"
    default_hint = "use the admin token printed by `rtc-annotator room create`"


class TokenRequest(BaseModel):
    role: str = Field(pattern="^(worker|client|admin)$", description="worker, client or admin.")
    ttl_s: int = Field(default=30 * 86400, ge=60, le=5 * 365 * 86400,
                       description="Lifetime in seconds.")
    label: str = Field(default="", max_length=200, description="Free text.")


class PolicyPatch(BaseModel):
    """Body of ``PUT /v1/room/policy``: the fields to change."""

    storage: str | None = Field(default=None, pattern="^(preferred|strict)$",
                                description="preferred or strict.")
    strict_backends: list[str] | None = Field(default=None,
                                              description="Backends always routed strictly.")
    max_queue: int | None = Field(default=None, ge=1, description="Queued requests per room.")


class DrainRequest(BaseModel):
    drain: bool = Field(description="true: stop routing new jobs to it; false: route again.")


@contextlib.asynccontextmanager
async def admin_client(request: web.Request) -> AsyncIterator[SignalingClient]:
    token = request.headers.get(HEADER, "").strip()
    if not token:
        raise NoRoomToken("no room admin token")
    settings = request.app[SETTINGS]
    if not settings.signaling.url:
        raise RtcAnnotatorError("serve has no signaling URL", code="NOT_CONFIGURED",
                                hint="set [signaling] url in the config that serve reads")
    client = SignalingClient(settings.signaling.url, token=token, reconnect=False,
                             connect_timeout_s=10.0, request_timeout_s=15.0)
    try:
        try:
            welcome = await client.connect()
        except SignalingError as exc:
            if exc.code in (Codes.TOKEN_INVALID, Codes.TOKEN_EXPIRED, Codes.TOKEN_REVOKED,
                            Codes.ROOM_NOT_FOUND):
                raise NotAdmin(f"the signaling server refused the token ({exc.code})") from None
            raise
        if welcome.get("role") != "admin":
            raise NotAdmin(f"that is a {welcome.get('role')} token, not an admin token")
        yield client
    finally:
        await client.close()


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("body must be JSON") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise BadRequest(f"invalid body: {where}: {first['msg']}", field=where) from None


def waiting(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Route requests whose last decision is ``queued``, oldest first, with positions."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for d in decisions:
        last[(d["client"], d["route_id"])] = d
    queued = sorted((d for d in last.values() if d["outcome"] == "queued"),
                    key=lambda d: d["at"])
    return [{"position": i, "client": d["client"], "route_id": d["route_id"],
             "since": d["at"], "requirements": d["requirements"], "reason": d["reason"]}
            for i, d in enumerate(queued, start=1)]


async def get_room(request: web.Request) -> web.Response:
    async with admin_client(request) as c:
        workers = await c.list_workers()
        policy = (await c.request("get_policy"))["policy"]
        decisions = (await c.request("decisions", limit=200))["decisions"]
        room = c.welcome.get("room")
    return web.json_response({"room": room, "workers": workers, "policy": policy,
                              "queue": waiting(decisions), "decisions": decisions[-50:]})


async def put_policy(request: web.Request) -> web.Response:
    raw = await _body(request, PolicyPatch)
    async with admin_client(request) as c:
        current = dict((await c.request("get_policy"))["policy"])
        changes = raw.model_dump(exclude_none=True)
        reply = await c.request("set_policy", policy={**current, **changes})
    return web.json_response({"policy": reply["policy"]})



async def post_drain(request: web.Request) -> web.Response:
    body = await _body(request, DrainRequest)
    worker = request.match_info["worker"]
    async with admin_client(request) as c:
        reply = await c.request("drain", worker=worker, drain=body.drain)
    return web.json_response({"worker": worker, "draining": bool(reply.get("draining")),
                              "online": bool(reply.get("online"))})


async def post_token(request: web.Request) -> web.Response:
    body = await _body(request, TokenRequest)
    async with admin_client(request) as c:
        reply = await c.request("issue_token", role=body.role, ttl_s=body.ttl_s,
                                label=body.label)
    return web.json_response({k: reply.get(k) for k in
                              ("room", "role", "token", "token_id", "expires_at")},
                             status=201)


async def delete_token(request: web.Request) -> web.Response:
    token_id = request.match_info["token_id"]
    async with admin_client(request) as c:
        reply = await c.request("revoke_token", token_id=token_id)
    return web.json_response({"token_id": token_id,
                              "closed_connections": int(reply.get("closed_connections", 0))})
