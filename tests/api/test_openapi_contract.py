"""Contract test: /openapi.json against the running server.

Every documented (path, method, status) is exercised by at least one request below; every
response's JSON matches its documented schema; every route the server has is documented.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rtc_annotator.api import make_app
from rtc_annotator.api.app import ROUTES
from rtc_annotator.api.jobs import JobManager
from rtc_annotator.client.jobs import JobRecord, JobRegistry
from rtc_annotator.config import Settings
from rtc_annotator.store import Store
from signaling.app import SignalingServer
from tests.api.conftest import Api, seed_video
from tests.e2e.conftest import room_tokens, signaling_server  # noqa: F401

TOKEN = "contract-test-token"


class FullApi(Api):
    """The server with jobs, media and room routes, behind an access token."""

    def __init__(self, base: str, session: aiohttp.ClientSession, store_: Store,
                 settings: Settings, tokens: dict[str, str]) -> None:
        super().__init__(base, session, store_)
        self.settings, self.tokens = settings, tokens


@pytest.fixture
async def full_api(store: Store, tmp_path: Path,  # noqa: F811
                   signaling_server: SignalingServer,  # noqa: F811
                   room_tokens: dict[str, str]) -> AsyncIterator[FullApi]:  # noqa: F811
    settings = Settings.model_validate({
        "signaling": {"url": signaling_server.url, "token": room_tokens["client"]},
        "client": {"spool_dir": str(tmp_path / "spool"), "jobs_dir": str(tmp_path / "jobs")},
        "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
    })
    manager = JobManager(settings, store)
    runner = web.AppRunner(make_app(store, settings=settings, token=TOKEN, jobs=manager))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield FullApi(f"http://127.0.0.1:{port}", session, store, settings, room_tokens)
    await manager.close()
    await runner.cleanup()


def check(schema: dict[str, Any], value: Any, doc: dict[str, Any], where: str = "$") -> None:
    """A small JSON Schema checker (the keywords the document uses)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        defs = doc["components"]["schemas"]
        target = defs.get(name)
        if target is None:  # pydantic-local $defs
            for s in defs.values():
                target = s.get("$defs", {}).get(name) or target
        assert target is not None, f"{where}: unresolved {schema['$ref']}"
        check(target, value, doc, where)
        return
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                check(option, value, doc, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: no anyOf option matched: {errors}")
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        py = {"string": str, "integer": int, "number": (int, float), "boolean": bool,
              "object": dict, "array": list, "null": type(None)}
        ok = any(isinstance(value, py[n]) and not (n in ("integer", "number")
                                                   and isinstance(value, bool)) for n in names)
        assert ok, f"{where}: {value!r} is not {names}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, str) and "pattern" in schema:
        assert re.search(schema["pattern"], value), f"{where}: {value!r} !~ {schema['pattern']}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema:
            assert value >= schema["minimum"], where
        if "maximum" in schema:
            assert value <= schema["maximum"], where
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key}"
        props = schema.get("properties", {})
        for key, sub in value.items():
            if key in props:
                check(props[key], sub, doc, f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                check(schema["additionalProperties"], sub, doc, f"{where}.{key}")
            else:
                assert schema.get("additionalProperties", True) is not False, \
                    f"{where}: unexpected {key}"
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check(schema["items"], item, doc, f"{where}[{i}]")


def _template(path: str, asset: str) -> str:
    return path.replace("{asset_id}", asset)


async def _video_file(api: FullApi, tmp_path: Path) -> str:
    """An asset whose file is recorded in the job registry (so /media serves it)."""
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(bytes(range(256)) * 40)
    asset = hashlib.sha256(clip.read_bytes()).hexdigest()
    await api.store.upsert_asset(asset, clip.name, clip.stat().st_size)
    registry = JobRegistry(api.settings.client.jobs_path())
    await registry.save(JobRecord(job_id="filejob", video=str(clip), asset_id=asset))
    # a job that never reached a worker (its client was killed while routing): cancellable
    await registry.save(JobRecord(job_id="routingjob", video=str(clip), asset_id=asset))
    return asset


async def _ended_job(api: FullApi, tmp_path: Path) -> str:
    """Submit a job no worker can take: it is accepted (202), then fails."""
    status, data, _, _ = await api.call("POST", "/v1/jobs", json={
        "video": str(tmp_path / "clip.mp4"), "pipelines": ["metadata"]})
    assert status == 202, data
    job_id = data["job"]["job_id"]
    for _ in range(400):
        _, data, _, _ = await api.call("GET", f"/v1/jobs/{job_id}")
        if data["job"]["status"] == "failed":
            return str(job_id)
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not fail: {data}")


async def test_openapi_matches_server(full_api: FullApi, tmp_path: Path) -> None:
    api = full_api
    asset = await seed_video(api.store)
    file_asset = await _video_file(api, tmp_path)
    ended = await _ended_job(api, tmp_path)
    admin = {"X-Room-Token": api.tokens["admin"]}
    client = {"X-Room-Token": api.tokens["client"]}
    issued = await api.call("POST", "/v1/room/tokens", headers=admin,
                            json={"role": "client", "ttl_s": 600})
    token_id = issued[1]["token_id"]
    missing = "0" * 64
    status, doc, _, _ = await api.call("GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(m, p) for m, p, _ in ROUTES}

    v = "/v1/videos/{asset_id}"
    cases: list[tuple[str, str, dict[str, Any], str, dict[str, Any]]] = [
        ("GET", "/health", {}, "200", {}),
        ("GET", "/openapi.json", {}, "200", {}),
        ("GET", "/v1/videos", {}, "200", {}),
        ("GET", v, {}, "200", {}),
        ("GET", v, {}, "404", {"asset": missing}),
        ("GET", v + "/artifacts", {"type": "scene", "all_runs": "true"}, "200", {}),
        ("GET", v + "/artifacts", {"limit": "0"}, "400", {}),
        ("GET", v + "/artifacts", {}, "404", {"asset": missing}),
        ("GET", v + "/jump", {"kind": "object"}, "200", {}),
        ("GET", v + "/jump", {"kind": "object", "from_ms": "99999"}, "404", {}),
        ("GET", v + "/jump", {"kind": "nope"}, "400", {}),
        ("GET", v + "/find", {"q": "gradient"}, "200", {}),
        ("GET", v + "/find", {"q": "zebra"}, "404", {}),
        ("GET", v + "/find", {"q": ""}, "400", {}),
        ("GET", v + "/profiles", {}, "200", {}),
        ("GET", v + "/profiles", {"type": "bad"}, "400", {}),
        ("GET", v + "/profiles", {}, "404", {"asset": missing}),
        ("GET", v + "/metadata", {}, "200", {}),
        ("GET", v + "/metadata", {}, "404", {"asset": missing}),
        ("GET", v + "/selections/{artifact_type}", {}, "200", {"type": "scene"}),
        ("GET", v + "/selections/{artifact_type}", {}, "400", {"type": "bad"}),
        ("GET", v + "/selections/{artifact_type}", {}, "404",
         {"type": "scene", "asset": missing}),
        ("PUT", v + "/selections/{artifact_type}", {}, "200",
         {"type": "scene", "json": {"mode": "latest"}}),
        ("PUT", v + "/selections/{artifact_type}", {}, "400",
         {"type": "scene", "json": {"mode": "nope"}}),
        ("PUT", v + "/selections/{artifact_type}", {}, "404",
         {"type": "scene", "asset": missing, "json": {"mode": "latest"}}),
        ("GET", v + "/export/{format}", {}, "200", {"format": "jsonl"}),
        ("GET", v + "/export/{format}", {}, "400", {"format": "pdf"}),
        ("GET", v + "/export/{format}", {}, "404", {"format": "vtt", "asset": missing}),
        ("GET", v + "/media", {}, "200", {"asset": file_asset}),
        ("GET", v + "/media", {}, "206", {"asset": file_asset,
                                          "headers": {"Range": "bytes=0-9"}}),
        ("GET", v + "/media", {}, "404", {}),
        ("POST", "/v1/login", {}, "200", {"json": {"token": TOKEN}}),
        ("POST", "/v1/login", {}, "401", {"json": {"token": "wrong"}}),
        ("GET", "/v1/jobs", {}, "200", {}),
        ("POST", "/v1/jobs", {}, "202", {"json": {"video": str(tmp_path / "clip.mp4"),
                                                  "pipelines": ["metadata"]}}),
        ("POST", "/v1/jobs", {}, "400", {"json": {"video": "relative.mp4",
                                                  "pipelines": ["metadata"]}}),
        ("POST", "/v1/jobs", {}, "403", {"json": {"video": "/x.mp4", "pipelines": ["a"]},
                                         "headers": {"Origin": "http://evil.example"}}),
        ("GET", "/v1/jobs/events", {"follow": "false"}, "200", {}),
        ("GET", "/v1/jobs/{job_id}", {}, "200", {"job": ended}),
        ("GET", "/v1/jobs/{job_id}", {}, "404", {"job": "nosuchjob"}),
        ("DELETE", "/v1/jobs/{job_id}", {}, "200", {"job": "routingjob"}),
        ("DELETE", "/v1/jobs/{job_id}", {}, "404", {"job": "nosuchjob"}),
        ("DELETE", "/v1/jobs/{job_id}", {}, "409", {"job": ended}),
        ("GET", "/v1/room", {}, "200", {"headers": admin}),
        ("GET", "/v1/room", {}, "401", {}),
        ("GET", "/v1/room", {}, "403", {"headers": client}),
        ("PUT", "/v1/room/policy", {}, "200", {"headers": admin, "json": {"max_queue": 50}}),
        ("PUT", "/v1/room/policy", {}, "400", {"headers": admin,
                                               "json": {"storage": "sometimes"}}),
        ("PUT", "/v1/room/policy", {}, "401", {"json": {"max_queue": 50}}),
        ("POST", "/v1/room/workers/{worker}/drain", {}, "200",
         {"headers": admin, "json": {"drain": True}}),
        ("POST", "/v1/room/workers/{worker}/drain", {}, "403",
         {"headers": client, "json": {"drain": True}}),
        ("POST", "/v1/room/tokens", {}, "201", {"headers": admin, "json": {"role": "worker"}}),
        ("POST", "/v1/room/tokens", {}, "400", {"headers": admin, "json": {"role": "boss"}}),
        ("DELETE", "/v1/room/tokens/{token_id}", {}, "200", {"headers": admin,
                                                             "token_id": token_id}),
        ("DELETE", "/v1/room/tokens/{token_id}", {}, "404", {"headers": admin,
                                                             "token_id": "nosuchtoken"}),
    ]
    covered = set()
    for method, path, params, want, extra in cases:
        url = _template(path, extra.get("asset", asset))
        url = url.replace("{artifact_type}", extra.get("type", "")).replace(
            "{format}", extra.get("format", "")).replace("{job_id}", extra.get("job", "")
            ).replace("{worker}", "gpu-1").replace("{token_id}", extra.get("token_id", ""))
        status, data, _, ctype = await api.call(method, url, params=params,
                                                json=extra.get("json"),
                                                headers=extra.get("headers"))
        assert str(status) == want, (method, url, params, status, data)
        spec = doc["paths"][path][method.lower()]["responses"][want]
        content = spec.get("content", {})
        media = ctype.split(";")[0]
        assert media in content, (path, want, ctype)
        schema = content[media].get("schema")
        if schema is not None and data is not None:
            check(schema, data, doc)
        covered.add((method, path, want))
    # serve without a client token cannot submit
    token, api.settings.signaling.token = api.settings.signaling.token, None
    status, data, _, _ = await api.call("POST", "/v1/jobs", json={
        "video": str(tmp_path / "clip.mp4"), "pipelines": ["metadata"]})
    api.settings.signaling.token = token
    assert status == 503 and data["error"]["code"] == "NOT_CONFIGURED", data
    check(doc["paths"]["/v1/jobs"]["post"]["responses"]["503"]["content"]["application/json"]
          ["schema"], data, doc)
    covered.add(("POST", "/v1/jobs", "503"))
    documented_statuses = {(m.upper(), p, s) for p, ops in doc["paths"].items()
                           for m, op in ops.items() for s in op["responses"]}
    assert documented_statuses == covered
