"""serve's guards: the media route serves only the file recorded for the asset, state changes
are same-origin only, an access token protects a server bound beyond 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from typer.testing import CliRunner

from rtc_annotator.api import make_app
from rtc_annotator.client.jobs import JobRecord, JobRegistry
from rtc_annotator.config import Settings
from rtc_annotator.store import Store
from tests.api.conftest import seed_video

CONTENT = bytes(range(256)) * 64


def _settings(tmp_path: Path) -> Settings:
    return Settings.model_validate({
        "client": {"spool_dir": str(tmp_path / "spool"), "jobs_dir": str(tmp_path / "jobs")},
        "storage": {"lab": {"base_path": str(tmp_path / "share"), "type": "nfs"}},
    })


@pytest.fixture
async def served(store: Store, tmp_path: Path) -> AsyncIterator[tuple[str, Settings]]:
    settings = _settings(tmp_path)
    runner = web.AppRunner(make_app(store, settings=settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", settings
    await runner.cleanup()


async def _asset_with_record(store: Store, settings: Settings, recorded: Path,
                             content: bytes = CONTENT) -> str:
    asset = hashlib.sha256(content).hexdigest()
    await store.upsert_asset(asset, "clip.mp4", len(content))
    await JobRegistry(settings.client.jobs_path()).save(
        JobRecord(job_id=f"job{asset[:8]}", video=str(recorded), asset_id=asset))
    return asset


async def test_media_serves_the_recorded_file_with_ranges(
        served: tuple[str, Settings], store: Store, tmp_path: Path) -> None:
    base, settings = served
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(CONTENT)
    asset = await _asset_with_record(store, settings, clip)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/v1/videos/{asset}/media") as r:
            assert r.status == 200 and await r.read() == CONTENT
            assert r.headers["Content-Type"] == "video/mp4"
            assert r.headers["Accept-Ranges"] == "bytes"
        async with s.get(f"{base}/v1/videos/{asset}/media",
                         headers={"Range": "bytes=1000-1099"}) as r:
            assert r.status == 206 and await r.read() == CONTENT[1000:1100]
            assert r.headers["Content-Range"] == f"bytes 1000-1099/{len(CONTENT)}"
        # the file changes under the same path and size: it is no longer that video
        clip.write_bytes(CONTENT[::-1])
        async with s.get(f"{base}/v1/videos/{asset}/media") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "VIDEO_NOT_HERE"


async def test_media_refuses_anything_but_the_assets_own_file(
        served: tuple[str, Settings], store: Store, tmp_path: Path) -> None:
    base, settings = served
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not a video " * 100)
    # 1. a path in the URL is never a path on disk
    async with aiohttp.ClientSession() as s:
        for bad in ("..%2F..%2F..%2Fetc%2Fpasswd", "../../../etc/passwd",
                    "%2e%2e%2f" * 3 + "etc%2fpasswd", str(secret).replace("/", "%2F")):
            async with s.get(f"{base}/v1/videos/{bad}/media") as r:
                body = await r.read()
                assert r.status in (400, 404), (bad, r.status)
                assert b"root:" not in body and b"not a video" not in body
    # 2. a recorded path whose bytes are not the asset's: refused (sha256 checked)
    asset = await _asset_with_record(store, settings, secret)
    # 3. a symlink on a storage backend leading outside its base path: refused by the
    #    storage rules even though its bytes are the asset's
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(CONTENT)
    share = tmp_path / "share" / "alice"
    share.mkdir(parents=True)
    os.symlink(outside, share / "link.mp4")
    linked = await _asset_with_record(store, settings, share / "link.mp4")
    # 4. the recorded file was replaced since: refused
    changed = tmp_path / "changed.mp4"
    changed.write_bytes(CONTENT[::-1])
    other = await _asset_with_record(store, settings, changed, CONTENT[::-1])
    changed.write_bytes(CONTENT[::-1][:-1] + b"x")
    async with aiohttp.ClientSession() as s:
        for a in (asset, linked, other):
            async with s.get(f"{base}/v1/videos/{a}/media") as r:
                data = await r.json()
                assert r.status == 404 and data["error"]["code"] == "VIDEO_NOT_HERE", data
                assert "not on this machine" in data["error"]["message"]
    # a regular file on the backend with the right bytes is served
    (share / "real.mp4").write_bytes(CONTENT)
    await JobRegistry(settings.client.jobs_path()).save(
        JobRecord(job_id="realjob", video=str(share / "real.mp4"), asset_id=linked))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/v1/videos/{linked}/media") as r:
            assert r.status == 200 and await r.read() == CONTENT


async def test_state_changes_are_same_origin_only(
        served: tuple[str, Settings], store: Store) -> None:
    base, _ = served
    asset = await seed_video(store)
    url = f"{base}/v1/videos/{asset}/selections/scene"
    async with aiohttp.ClientSession() as s:
        for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                        {"Sec-Fetch-Site": "same-site"}):
            async with s.put(url, json={"mode": "latest"}, headers=headers) as r:
                data = await r.json()
                assert r.status == 403 and data["error"]["code"] == "CROSS_ORIGIN", data
        async with s.get(url) as r:
            assert (await r.json())["selection"]["mode"] == "default"  # nothing changed
        async with s.put(url, json={"mode": "latest"},
                         headers={"Origin": base, "Sec-Fetch-Site": "same-origin"}) as r:
            assert r.status == 200
        # reads are not refused cross-origin (no state changes on GET)
        async with s.get(url, headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 200 and (await r.json())["selection"]["mode"] == "latest"


async def test_access_token_and_session_cookie(store: Store, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(CONTENT)
    asset = await _asset_with_record(store, settings, clip)
    runner = web.AppRunner(make_app(store, settings=settings, token="s3cret-token"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        # unsafe=True: aiohttp keeps cookies of IP-address hosts only then (browsers always do)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            for path in ("/v1/videos", f"/v1/videos/{asset}/media", "/openapi.json"):
                async with s.get(base + path) as r:
                    assert r.status == 401 and (await r.json())["error"]["code"] == "UNAUTHORIZED"
            async with s.get(base + "/", allow_redirects=False) as r:  # the page itself: open
                assert r.status == 200 and "text/html" in r.headers["Content-Type"]
                assert "default-src 'self'" in r.headers["Content-Security-Policy"]
                assert r.headers["X-Frame-Options"] == "DENY"
            async with s.get(base + "/health") as r:
                assert r.status == 200
            async with s.get(base + "/v1/videos",
                             headers={"Authorization": "Bearer s3cret-token"}) as r:
                assert r.status == 200
            async with s.post(base + "/v1/login", json={"token": "wrong"}) as r:
                assert r.status == 401
            async with s.post(base + "/v1/login", json={"token": "s3cret-token"}) as r:
                assert r.status == 200
                cookie = r.headers["Set-Cookie"]
                assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
                assert "s3cret-token" not in cookie
            # the cookie now opens the API, the video element's requests included
            async with s.get(f"{base}/v1/videos/{asset}/media",
                             headers={"Range": "bytes=0-3"}) as r:
                assert r.status == 206 and await r.read() == CONTENT[:4]
    finally:
        await runner.cleanup()


def test_serve_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    from rtc_annotator.cli import app

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "s.sqlite3"}"\n')
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--config", str(cfg)],
                                env={"RTC_ANNOTATOR_SERVE_TOKEN": ""})
    assert result.exit_code == 2, result.output
    assert "--token-file" in result.output and "127.0.0.1" in result.output
