"""The HTTP API over the store (aiohttp). Routes are listed in :mod:`rtc_annotator.api.openapi`.

``make_app(store, settings=...)`` builds the application: the store routes, the video media
route, the jobs routes (``serve`` acting as the client) and the room dashboard routes, plus the
web app's static files at ``/`` (see docs/webapp.md). ``run_server(settings, host, port)`` opens
the store and runs it. User input only reaches the store as typed, validated values.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import mimetypes
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from rtc_annotator.api import room
from rtc_annotator.api.errors import BadRequest, error_middleware, error_response
from rtc_annotator.api.jobs import JobManager, parse_job_request
from rtc_annotator.api.media import MediaLocator
from rtc_annotator.api.openapi import openapi_document
from rtc_annotator.api.security import COOKIE, safe_headers, security_middleware, session_value
from rtc_annotator.config import Settings
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.exporters import FORMATS, export
from rtc_annotator.query import artifact_type_for, find, jump
from rtc_annotator.store import Selection, Store
from rtc_annotator.store.repository import check_asset_id

STORE: web.AppKey[Store] = web.AppKey("store", Store)
JOBS: web.AppKey[JobManager] = web.AppKey("jobs", JobManager)
MEDIA: web.AppKey[MediaLocator] = web.AppKey("media", MediaLocator)
TOKEN: web.AppKey[str] = web.AppKey("token", str)
MAX_LIMIT = 10_000
REGISTRY_POLL_S = 2.0
WEB_DIR = Path(str(resources.files("rtc_annotator") / "web"))


class NoMatch(RtcAnnotatorError):
    """A jump or find found nothing in that direction."""

    code = "NO_MATCH"
    default_hint = "try the other direction or another position"


def _int(request: web.Request, name: str, default: int | None = None, *, lo: int | None = None,
         hi: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw[:40]!r}", field=name) from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise BadRequest(f"{name} must be between {lo} and {hi}", field=name)
    return value


def _float(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {raw[:40]!r}", field=name) from None
    if not 0.0 <= value <= 1.0:
        raise BadRequest(f"{name} must be between 0 and 1", field=name)
    return value


def _choice(request: web.Request, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = request.query.get(name, default)
    if value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}", field=name)
    return value


def _asset(request: web.Request) -> str:
    return check_asset_id(request.match_info["asset_id"])


def _store(request: web.Request) -> Store:
    return request.app[STORE]


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def list_videos(request: web.Request) -> web.Response:
    return web.json_response({"videos": await _store(request).list_assets()})


async def get_video(request: web.Request) -> web.Response:
    store, asset = _store(request), _asset(request)
    info = await store.get_asset(asset)
    selections = {}
    for atype in await store.artifact_types(asset):
        sel = await store.get_selection(asset, atype)
        selections[atype] = {"selection": sel.model_dump(),
                             "run_id": await store.selected_run(asset, atype, sel)}
    return web.json_response({"video": info, "runs": await store.runs(asset),
                              "selections": selections})


async def list_artifacts(request: web.Request) -> web.Response:
    store, asset = _store(request), _asset(request)
    await store.get_asset(asset)
    atype = request.query.get("type") or None
    if atype is not None:
        atype = artifact_type_for(atype)
    all_runs = _choice(request, "all_runs", "false", ("true", "false")) == "true"
    envs = await store.artifacts(
        asset, atype,
        from_ms=_int(request, "from_ms"), to_ms=_int(request, "to_ms"),
        run_id=request.query.get("run_id") or None,
        model_profile=request.query.get("profile") or None,
        apply_selection=not all_runs,
        limit=_int(request, "limit", 1000, lo=1, hi=MAX_LIMIT) or 1000,
    )
    return web.json_response({"artifacts": [e.model_dump(mode="json") for e in envs]})


async def jump_handler(request: web.Request) -> web.Response:
    store, asset = _store(request), _asset(request)
    await store.get_asset(asset)
    kind = request.query.get("kind")
    if not kind:
        raise BadRequest("kind is required", field="kind", hint="e.g. kind=object")
    hit = await jump(
        store, asset, kind, _int(request, "from_ms", 0) or 0,
        _choice(request, "direction", "next", ("next", "prev")),
        labels=request.query.getall("label", []) or None,
        min_confidence=_float(request, "min_confidence"),
        cursor=request.query.get("cursor") or None,
    )
    if hit is None:
        raise NoMatch(f"no {kind} in that direction")
    return web.json_response({"artifact": hit.model_dump(mode="json")})


async def find_handler(request: web.Request) -> web.Response:
    store, asset = _store(request), _asset(request)
    await store.get_asset(asset)
    text = request.query.get("q")
    if text is None:
        raise BadRequest("q is required", field="q", hint="the text to search for")
    hit = await find(
        store, asset, text, _int(request, "from_ms", 0) or 0,
        _choice(request, "direction", "next", ("next", "prev")),
        source=_choice(request, "source", "all", ("transcript", "ocr", "all")),
        cursor=request.query.get("cursor") or None,
    )
    if hit is None:
        raise NoMatch("no match in that direction")
    return web.json_response({"match": hit.to_dict()})


async def profiles(request: web.Request) -> web.Response:
    store, asset = _store(request), _asset(request)
    await store.get_asset(asset)
    atype = request.query.get("type") or None
    if atype is not None:
        atype = artifact_type_for(atype)
    return web.json_response({"profiles": await store.profiles(asset, atype)})


async def _selection_body(store: Store, asset: str, atype: str) -> dict[str, Any]:
    sel = await store.get_selection(asset, atype)
    return {"artifact_type": atype, "selection": sel.model_dump(),
            "run_id": await store.selected_run(asset, atype, sel)}


async def get_selection(request: web.Request) -> web.Response:
    store, asset = _store(request), _asset(request)
    await store.get_asset(asset)
    atype = artifact_type_for(request.match_info["artifact_type"])
    return web.json_response(await _selection_body(store, asset, atype))


async def put_selection(request: web.Request) -> web.Response:
    store, asset = _store(request), _asset(request)
    await store.get_asset(asset)
    atype = artifact_type_for(request.match_info["artifact_type"])
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("body must be JSON", hint='e.g. {"mode": "latest"}') from None
    try:
        selection = Selection.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise BadRequest(f"invalid selection: {first['msg']}", field=field,
                         hint="mode: default|latest|pinned|profile|best_quality") from None
    await store.set_selection(asset, atype, selection)
    return web.json_response(await _selection_body(store, asset, atype))


async def metadata(request: web.Request) -> web.Response:
    store, asset = _store(request), _asset(request)
    await store.get_asset(asset)
    found = await store.artifacts(asset, "video.metadata", limit=1)
    if not found:
        raise NoMatch("this video has no video.metadata artifact",
                      hint="run the metadata pipeline")
    return web.json_response({"metadata": found[0].payload, "artifact_id": found[0].artifact_id})


async def export_handler(request: web.Request) -> web.StreamResponse:
    store, asset = _store(request), _asset(request)
    await store.get_asset(asset)
    fmt = request.match_info["format"]
    chunks = export(store, asset, fmt)
    _, content_type, ext = FORMATS[fmt]
    resp = web.StreamResponse(headers={
        "Content-Type": content_type,
        "Content-Disposition": f'attachment; filename="{asset[:16]}.{ext}"',
    })
    await resp.prepare(request)
    async for chunk in chunks:
        if chunk:
            await resp.write(chunk)
    await resp.write_eof()
    return resp


async def media(request: web.Request) -> web.StreamResponse:
    store, asset = _store(request), _asset(request)
    info = await store.get_asset(asset)
    path = await request.app[MEDIA].find(asset, info.get("size_bytes"))
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return web.FileResponse(path, headers={"Content-Type": ctype})


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("body must be JSON") from None


def _jobs(request: web.Request) -> JobManager:
    manager = request.app.get(JOBS)
    if manager is None:
        raise RtcAnnotatorError("this server runs no jobs", code="NOT_CONFIGURED",
                                hint="start it with `rtc-annotator serve` and a client config")
    return manager


async def list_jobs(request: web.Request) -> web.Response:
    return web.json_response({"jobs": await _jobs(request).list()})


async def post_job(request: web.Request) -> web.Response:
    manager = _jobs(request)
    job = await manager.submit(parse_job_request(await _json_body(request)))
    return web.json_response({"job": job}, status=202)


async def get_job(request: web.Request) -> web.Response:
    return web.json_response({"job": await _jobs(request).get(request.match_info["job_id"])})


async def delete_job(request: web.Request) -> web.Response:
    return web.json_response(
        {"job": await _jobs(request).cancel(request.match_info["job_id"])})


async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``job`` event per change (all jobs first, then live).

    Jobs this server runs are pushed as they move; the registry is also read every
    ``REGISTRY_POLL_S`` so that jobs followed by other processes (``submit``, ``jobs attach``)
    are seen changing too."""
    manager = _jobs(request)
    follow = _choice(request, "follow", "true", ("true", "false")) == "true"
    queue = manager.subscribe()
    try:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        seen: dict[str, Any] = {}
        for job in await manager.list():
            seen[job["job_id"]] = job.get("updated_at")
            await resp.write(_sse(job))
        while follow:
            try:
                item = await asyncio.wait_for(queue.get(), REGISTRY_POLL_S)
            except TimeoutError:
                for job in await manager.list():
                    if job["live"] is None and seen.get(job["job_id"]) != job.get("updated_at"):
                        seen[job["job_id"]] = job.get("updated_at")
                        await resp.write(_sse(job))
                await resp.write(b": keep-alive\n\n")
                continue
            if item is None:  # the server is stopping
                break
            await resp.write(_sse(item))
        await resp.write_eof()
        return resp
    finally:
        manager.unsubscribe(queue)


def _sse(job: dict[str, Any]) -> bytes:
    return f"event: job\ndata: {json.dumps(job, separators=(',', ':'))}\n\n".encode()


async def login(request: web.Request) -> web.Response:
    token = request.app.get(TOKEN)
    body = await _json_body(request)
    given = body.get("token") if isinstance(body, dict) else None
    if token is None:
        return web.json_response({"login": "not needed"})
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
        return error_response("UNAUTHORIZED", "wrong access token",
                              "the token is the one serve was started with")
    resp = web.json_response({"login": "ok"})
    resp.set_cookie(COOKIE, session_value(token), httponly=True, samesite="Strict", path="/",
                    secure=request.secure)
    return resp


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/health", health),
    ("GET", "/openapi.json", openapi),
    ("GET", "/v1/videos", list_videos),
    ("GET", "/v1/videos/{asset_id}", get_video),
    ("GET", "/v1/videos/{asset_id}/artifacts", list_artifacts),
    ("GET", "/v1/videos/{asset_id}/jump", jump_handler),
    ("GET", "/v1/videos/{asset_id}/find", find_handler),
    ("GET", "/v1/videos/{asset_id}/profiles", profiles),
    ("GET", "/v1/videos/{asset_id}/metadata", metadata),
    ("GET", "/v1/videos/{asset_id}/selections/{artifact_type}", get_selection),
    ("PUT", "/v1/videos/{asset_id}/selections/{artifact_type}", put_selection),
    ("GET", "/v1/videos/{asset_id}/export/{format}", export_handler),
    ("GET", "/v1/videos/{asset_id}/media", media),
    ("POST", "/v1/login", login),
    ("GET", "/v1/jobs", list_jobs),
    ("POST", "/v1/jobs", post_job),
    ("GET", "/v1/jobs/events", job_events),
    ("GET", "/v1/jobs/{job_id}", get_job),
    ("DELETE", "/v1/jobs/{job_id}", delete_job),
    ("GET", "/v1/room", room.get_room),
    ("PUT", "/v1/room/policy", room.put_policy),
    ("POST", "/v1/room/workers/{worker}/drain", room.post_drain),
    ("POST", "/v1/room/tokens", room.post_token),
    ("DELETE", "/v1/room/tokens/{token_id}", room.delete_token),
]


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html",
                            headers={"Content-Type": "text/html; charset=utf-8"})


def make_app(store: Store, *, settings: Settings | None = None, token: str | None = None,
             jobs: JobManager | None = None, media_locator: MediaLocator | None = None
             ) -> web.Application:
    """The application. ``settings``: the client config (jobs, room, media lookup);
    ``token``: require it on every API request (see :mod:`rtc_annotator.api.security`)."""
    from rtc_annotator.client.jobs import JobRegistry
    from rtc_annotator.storage import StorageResolver

    app = web.Application(middlewares=[security_middleware(token), error_middleware],
                          client_max_size=64 * 1024)
    app.on_response_prepare.append(safe_headers)
    app[STORE] = store
    settings = settings or Settings()
    app[room.SETTINGS] = settings
    if token is not None:
        app[TOKEN] = token
    if jobs is not None:
        app[JOBS] = jobs

        async def end_streams(_: web.Application) -> None:
            jobs.end_streams()

        app.on_shutdown.append(end_streams)
    app[MEDIA] = media_locator or MediaLocator(
        JobRegistry(settings.client.jobs_path()), StorageResolver(settings.storage_config()))
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.router.add_get("/", index)
    app.router.add_static("/static/", WEB_DIR, follow_symlinks=False, show_index=False)
    return app


async def run_server(settings: Settings, host: str, port: int, *,
                     token: str | None = None) -> None:
    """Open the store and serve until cancelled; jobs submitted here run in this process."""
    store = await Store.open(settings.database.url)
    manager = JobManager(settings, store)
    runner = web.AppRunner(make_app(store, settings=settings, token=token, jobs=manager))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await manager.close()
        await runner.cleanup()
        await store.close()
