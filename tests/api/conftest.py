"""API fixtures: a real aiohttp server on 127.0.0.1 over a real store (both backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rtc_annotator.api import make_app
from rtc_annotator.store import Store
from tests.store.conftest import backend, env, new_asset, store, store_url  # noqa: F401


class Api:
    """A running server and a client session against it."""

    def __init__(self, base: str, session: aiohttp.ClientSession, store_: Store) -> None:
        self.base, self.session, self.store = base, session, store_

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any, bytes, str]:
        async with self.session.request(method, self.base + path, **kw) as resp:
            body = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            data = None
            if ctype.startswith("application/json"):
                data = await resp.json()
            return resp.status, data, body, ctype


@pytest.fixture
async def api(store: Store) -> AsyncIterator[Api]:  # noqa: F811
    runner = web.AppRunner(make_app(store))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield Api(f"http://127.0.0.1:{port}", session, store)
    await runner.cleanup()


async def seed_video(store: Store) -> str:  # noqa: F811
    asset = new_asset()
    await store.upsert_asset(asset, "lecture.mp4", 1000)
    await store.ingest([
        env(asset, "transcript.segment", 1000, 2000, text="gradient descent", ordinal=0),
        env(asset, "ocr.text", 1500, 1600, text="Gradient slide", ordinal=1),
        env(asset, "object.detection", 500, label="dog", ordinal=2),
        env(asset, "object.detection", 500, label="cat", ordinal=3),
        env(asset, "scene", 0, 3000, ordinal=4),
        env(asset, "video.metadata", 0, 3000, ordinal=5),
        env(asset, "scene", 0, 3000, run_id="run-2", profile="high_quality", ordinal=6),
    ])
    return asset
