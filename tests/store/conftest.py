"""Store fixtures: the same suite runs on a fresh SQLite file and a fresh PostgreSQL database."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlparse

import pytest

from rtc_annotator.artifacts import ArtifactEnvelope, make_envelope
from rtc_annotator.store import Store


async def _admin(pg_url: str) -> Any:
    import asyncpg  # type: ignore[import-untyped]

    p = urlparse(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    return await asyncpg.connect(host=p.hostname, port=p.port, user=p.username or "postgres",
                                 database=(p.path or "/postgres").lstrip("/") or "postgres")


async def fresh_store_url(backend: str, tmp_path: Any, pg_url: str | None
                          ) -> AsyncIterator[str]:
    """A URL of an empty store: a new SQLite file, or a new PostgreSQL database (dropped after)."""
    if backend == "sqlite" or pg_url is None:
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}"
        return
    name = "test_" + secrets.token_hex(6)
    conn = await _admin(pg_url)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    base = pg_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        conn = await _admin(pg_url)
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """(name, pg_url); asking for pg_url here (sync) lets conftest probe PostgreSQL."""
    if request.param == "postgres":
        return ("postgres", request.getfixturevalue("pg_url"))
    return ("sqlite", None)


@pytest.fixture
async def store_url(backend: tuple[str, str | None], tmp_path: Any) -> AsyncIterator[str]:
    async for url in fresh_store_url(backend[0], tmp_path, backend[1]):
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url)
    try:
        yield s
    finally:
        await s.close()


def new_asset() -> str:
    return secrets.token_hex(32)


PAYLOADS: dict[str, Callable[[int, int, dict[str, Any]], dict[str, Any]]] = {
    "transcript.segment": lambda s, e, kw: {
        "text": kw.get("text", "hello"), "language": "en", "start_ms": s, "end_ms": e,
        "confidence": kw.get("confidence", 0.9), "words": []},
    "ocr.text": lambda s, e, kw: {
        "text": kw.get("text", "exit"), "confidence": kw.get("confidence", 0.8),
        "polygon": [[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]], "languages": ["en"]},
    "object.detection": lambda s, e, kw: {
        "label": kw.get("label", "dog"), "confidence": kw.get("confidence", 0.7),
        "box": {"x1": 0.1, "y1": 0.1, "x2": 0.5, "y2": 0.5}, "frame_pts_ms": s,
        "track_id": None},
    "scene": lambda s, e, kw: {"index": kw.get("index", 0), "start_ms": s, "end_ms": e,
                               "boundary_score": 0.5},
    "video.metadata": lambda s, e, kw: {
        "duration_ms": e, "fps": 25.0, "variable_frame_rate": False, "codec": "h264",
        "width": 160, "height": 120, "size_bytes": 1000},
}


def env(asset_id: str, artifact_type: str, start: int, end: int | None = None, *,
        run_id: str = "run-1", profile: str = "balanced", ordinal: int = 0,
        **kw: Any) -> ArtifactEnvelope:
    """An envelope of ``artifact_type`` spanning [start, end]."""
    end = start + 100 if end is None else end
    return make_envelope(
        asset_id=asset_id, artifact_type=artifact_type, schema_version=1,
        span_start_ms=start, span_end_ms=end, payload=PAYLOADS[artifact_type](start, end, kw),
        producer="test", producer_version="1", model_profile=profile, config_hash="cfg",
        input_hash="in", run_id=run_id, ordinal=ordinal,
    )
