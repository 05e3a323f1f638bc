"""Browser fixtures: headless Chromium from Debian driven by Playwright (Python), against
``serve``'s real application on 127.0.0.1 over a real store.

* ``chromium``: ``/usr/bin/chromium`` (``make test`` installs the Debian package); missing, the
  test fails under ``CI=true`` and is skipped with the reason elsewhere.
* ``browser``: a new browser context per test in one Chromium per module (started by
  Playwright with a fresh user-data-dir); downloads accepted. Browser test modules run their
  tests in one event loop per module (``pytestmark``), so the browser is started once.
* ``viewer_store``: built once per session from real artifacts: an ffmpeg-made clip (red, blue,
  green, one second each) run through the real ``metadata`` and ``scenes`` pipelines
  (``annotate``), plus transcript, OCR and object detection envelopes written directly (no
  model runs here) and a job record naming the clip, which is how ``serve`` finds the file.
  Each test gets its own copy of the database.
* ``serve_app``: ``make_app`` on 127.0.0.1 with a given store and settings.

``SCREENSHOTS=1`` makes the tests that show a main view save it under docs/images/.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from rtc_annotator.api import make_app
from rtc_annotator.api.jobs import JobManager
from rtc_annotator.artifacts import make_envelope
from rtc_annotator.client.jobs import JobRecord, JobRegistry, JobStatus
from rtc_annotator.config import Settings
from rtc_annotator.store import Selection, Store
from tests.conftest import IN_CI, VideoFactory

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"]
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(scope="session")
def chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"{CHROMIUM} is missing: `make test` installs the Debian package chromium"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: browser tests may not be skipped)")
        pytest.skip(reason)
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.fail("the Python package playwright is missing: `make install` (dev extra)")
    return CHROMIUM


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium_browser(chromium: str) -> AsyncIterator[Any]:
    """One Chromium per test module (Playwright starts it with a fresh temporary
    user-data-dir)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        try:
            yield b
        finally:
            await b.close()


@pytest_asyncio.fixture(loop_scope="module")
async def browser(chromium_browser: Any) -> AsyncIterator[Any]:
    """A new, isolated browser context per test; ``browser.new_page()`` for pages."""
    context = await chromium_browser.new_context(accept_downloads=True,
                                                 viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def fresh_browser(chromium: str) -> AsyncIterator[Any]:
    """A Chromium of its own for a test that runs in its own event loop (the job and room
    tests share the function-scoped signaling fixtures of tests/e2e)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        context = await b.new_context(accept_downloads=True,
                                      viewport={"width": 1280, "height": 860})
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            await context.close()
            await b.close()


async def screenshot(page: Any, name: str, settle: str | None = None) -> None:
    """Save a main view under docs/images/ when SCREENSHOTS=1 (docs use these); ``settle``:
    a JS predicate to wait for first (e.g. the video has its frame, no spinner)."""
    if os.environ.get("SCREENSHOTS") != "1":
        return
    if settle is not None:
        await page.wait_for_function(settle)
        await page.wait_for_timeout(500)
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(DOCS_IMAGES / name), full_page=False)


def client_settings(root: Path, **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "database": {"url": f"sqlite+aiosqlite:///{root / 'store.sqlite3'}"},
        "client": {"spool_dir": str(root / "spool"), "jobs_dir": str(root / "jobs")},
        "worker": {"name": "viewer-local", "cache_dir": str(root / "cache")},
        "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
    }
    for key, value in extra.items():
        data.setdefault(key, {}).update(value)
    return Settings.model_validate(data)


@dataclass
class ViewerData:
    root: Path
    clip: Path
    asset: str
    missing_asset: str
    """An asset whose file is on no path recorded here."""

    def settings(self, root: Path) -> Settings:
        """Settings over a private copy of the store and job registry under ``root``."""
        shutil.copy(self.root / "store.sqlite3", root / "store.sqlite3")
        shutil.copytree(self.root / "jobs", root / "jobs", dirs_exist_ok=True)
        return client_settings(root)


TRANSCRIPT = [(200, 900, "welcome to the lecture"), (1000, 2000, "gradient descent step by step"),
              (2100, 2900, "questions at the end")]
OCR = [(1500, 2500, "Gradient slide"), (2600, 2900, "Thank you")]
DOG_FRAMES = list(range(1000, 1440, 40))  # a tracked dog, 11 frames at 25 fps
CAT_FRAME = 1200  # one low-confidence cat


def _env(asset: str, atype: str, start: int, end: int, payload: dict[str, Any], run_id: str,
         ordinal: int, profile: str = "balanced") -> Any:
    return make_envelope(asset_id=asset, artifact_type=atype, schema_version=1,
                         span_start_ms=start, span_end_ms=end, payload=payload,
                         producer="fixture", producer_version="1", model_profile=profile,
                         config_hash="cfg", input_hash="in", run_id=run_id, ordinal=ordinal)


async def _seed(root: Path, clip: Path) -> tuple[str, str]:
    from rtc_annotator.commands.pipelines_cmd import annotate_video

    settings = client_settings(root)
    summary = await annotate_video(settings, clip, ["metadata", "scenes"], "balanced", {})
    assert summary["status"] == "completed", summary
    asset = summary["asset_id"]
    store = await Store.open(settings.database.url)
    try:
        # the real scenes run counts (a second, high_quality run is added below)
        await store.set_selection(asset, "scene", Selection(mode="pinned",
                                                            run_id=summary["runs"]["scenes"]))
        envs = []
        for i, (s, e, text) in enumerate(TRANSCRIPT):
            envs.append(_env(asset, "transcript.segment", s, e, {
                "text": text, "language": "en", "start_ms": s, "end_ms": e, "confidence": 0.9,
                "words": []}, "run-transcript", i))
        for i, (s, e, text) in enumerate(OCR):
            envs.append(_env(asset, "ocr.text", s, e, {
                "text": text, "confidence": 0.8, "languages": ["en"],
                "polygon": [[0.1, 0.7], [0.6, 0.7], [0.6, 0.9], [0.1, 0.9]]}, "run-ocr", i))
        for i, t in enumerate(DOG_FRAMES):
            x = 0.1 + i * 0.02
            envs.append(_env(asset, "object.detection", t, t, {
                "label": "dog", "confidence": 0.9, "frame_pts_ms": t, "track_id": 7,
                "box": {"x1": x, "y1": 0.2, "x2": x + 0.3, "y2": 0.6}}, "run-objects", i))
        envs.append(_env(asset, "object.detection", CAT_FRAME, CAT_FRAME, {
            "label": "cat", "confidence": 0.3, "frame_pts_ms": CAT_FRAME, "track_id": None,
            "box": {"x1": 0.6, "y1": 0.5, "x2": 0.9, "y2": 0.9}}, "run-objects", 100))
        # a second scenes run with another profile: one scene for the whole clip
        envs.append(_env(asset, "scene", 0, 3000, {"index": 0, "start_ms": 0, "end_ms": 3000},
                         "run-scenes-hq", 0, profile="high_quality"))
        for run, pipeline, profile in (("run-transcript", "transcript", "balanced"),
                                       ("run-ocr", "ocr", "balanced"),
                                       ("run-objects", "objects", "balanced"),
                                       ("run-scenes-hq", "scenes", "high_quality")):
            await store.start_run(run, asset, pipeline, profile, "fixture", "cfg")
            await store.finish_run(run, "completed")
        await store.ingest(envs)
        missing = "f" * 64
        await store.upsert_asset(missing, "elsewhere.mp4", 1234, duration_ms=3000)
        await store.ingest([_env(missing, "scene", 0, 3000,
                                 {"index": 0, "start_ms": 0, "end_ms": 3000}, "run-x", 0)])
    finally:
        await store.close()
    registry = JobRegistry(settings.client.jobs_path())
    record = JobRecord(job_id="fixturejob01", video=str(clip), asset_id=asset,
                       pipelines=["metadata", "scenes"], status=JobStatus.DONE)
    await registry.save(record)
    return asset, missing


@pytest.fixture(scope="session")
def viewer_data(make_video: VideoFactory, tmp_path_factory: pytest.TempPathFactory
                ) -> ViewerData:
    root = tmp_path_factory.mktemp("viewer")
    clip = make_video(colors=("red", "blue", "green"), seconds_each=1.0, fps=25, size="320x180",
                      name="lecture.mp4")
    asset, missing = asyncio.run(_seed(root, clip))
    return ViewerData(root, clip, asset, missing)


ServeApp = Callable[..., Awaitable[str]]


@contextlib.asynccontextmanager
async def _serving() -> AsyncIterator[ServeApp]:
    runners: list[web.AppRunner] = []
    stores: list[Store] = []
    managers: list[JobManager] = []

    async def start(settings: Settings, *, token: str | None = None, jobs: bool = False,
                    link_options: Any = None) -> str:
        store = await Store.open(settings.database.url)
        stores.append(store)
        manager = None
        if jobs:
            manager = JobManager(settings, store, link_options=link_options)
            managers.append(manager)
        runner = web.AppRunner(make_app(store, settings=settings, token=token, jobs=manager),
                               access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    try:
        yield start
    finally:
        for m in managers:
            await m.close()
        for r in runners:
            await r.cleanup()
        for s in stores:
            await s.close()


@pytest_asyncio.fixture(loop_scope="module")
async def serve_app() -> AsyncIterator[ServeApp]:
    """``await serve_app(settings, token=None, jobs=False, link_options=None)`` -> base URL
    (for the tests of a module sharing one event loop)."""
    async with _serving() as start:
        yield start


@pytest_asyncio.fixture
async def serve_app_fn() -> AsyncIterator[ServeApp]:
    """``serve_app`` for tests running in their own event loop."""
    async with _serving() as start:
        yield start
