"""HTTP error mapping: every failure answers ``{"error": {code, message, hint, field}}``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.logs import get_logger

log = get_logger(__name__)

STATUS = {
    "NOT_FOUND": 404,
    "NO_MATCH": 404,
    "BAD_REQUEST": 400,
    "QUERY_ERROR": 400,
    "SCHEMA_ERROR": 400,
    "SELECTION_ERROR": 400,
    "EXPORT_ERROR": 400,
    "METHOD_NOT_ALLOWED": 405,
    "STORE_ERROR": 503,
    "UNAUTHORIZED": 401,
    "CROSS_ORIGIN": 403,
    "FORBIDDEN": 403,
    "TOKEN_INVALID": 403,
    "TOKEN_EXPIRED": 403,
    "TOKEN_REVOKED": 403,
    "TOKEN_NOT_FOUND": 404,
    "WORKER_NOT_FOUND": 404,
    "UNKNOWN_JOB": 404,
    "VIDEO_NOT_HERE": 404,
    "VIDEO_ERROR": 400,
    "OPTIONS_ERROR": 400,
    "INVALID_MESSAGE": 400,
    "JOB_ENDED": 409,
    "NOT_CONFIGURED": 503,
    "CONNECTION_LOST": 502,
    "TIMEOUT": 504,
}


class BadRequest(RtcAnnotatorError):
    """A request parameter or body is malformed."""

    code = "BAD_REQUEST"

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.field = field


def error_response(code: str, message: str, hint: str = "", field: str | None = None,
                   status: int | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message, "hint": hint, "field": field}}
    return web.json_response(body, status=status or STATUS.get(code, 500))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RtcAnnotatorError as exc:
        return error_response(exc.code, exc.message, exc.hint, getattr(exc, "field", None))
    except web.HTTPNotFound:
        return error_response("NOT_FOUND", f"no route {request.path[:200]}",
                              "see /openapi.json for the routes")
    except web.HTTPMethodNotAllowed:
        return error_response("METHOD_NOT_ALLOWED", f"{request.method} is not allowed here",
                              "see /openapi.json for the methods")
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error method=%s path=%s", request.method, request.path[:200])
        return error_response("INTERNAL_ERROR", "internal error", "see the server log",
                              status=500)
