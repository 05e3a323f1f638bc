"""The client spool: batches survive an unreachable PostgreSQL and land exactly once.

The outage is real: the test's database is closed to new connections (``ALLOW_CONNECTIONS
false``) and its open connections are terminated (``pg_terminate_backend``), then reopened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from rtc_annotator.artifacts.schemas import SchemaError
from rtc_annotator.client.spool import Spool, is_unavailable, spool_status
from rtc_annotator.client.submit import submit_video
from rtc_annotator.pipelines.base import PipelineOutput
from rtc_annotator.store import Store, StoreError
from rtc_annotator.worker.envelopes import EnvelopeBuilder

from .conftest import MakeSettings, StartWorker, fast_link

ASSET = "ab" * 32


class PgDatabase:
    """A throwaway database on the test server that can be switched off and on."""

    def __init__(self, server_url: str, name: str) -> None:
        self.server_url = server_url
        self.name = name
        u = urlparse(server_url.replace("postgresql+asyncpg://", "postgresql://"))
        self.dsn = dict(host=u.hostname, port=u.port, user=u.username or "postgres",
                        database=(u.path or "/postgres").lstrip("/") or "postgres")
        base = server_url.rsplit("/", 1)[0]
        self.url = f"{base}/{name}"

    async def _admin(self, sql: str) -> None:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(**self.dsn, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create(self) -> None:
        await self._admin(f'CREATE DATABASE "{self.name}"')

    async def block(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        await self._admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()")

    async def unblock(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    async def drop(self) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture
async def pg_db(pg_url: str) -> AsyncIterator[PgDatabase]:
    db = PgDatabase(pg_url, f"spool_{secrets.token_hex(4)}")
    await db.create()
    try:
        yield db
    finally:
        with contextlib.suppress(Exception):
            await db.unblock()
        await db.drop()


def _envelopes(n: int, start: int = 0) -> list[dict[str, Any]]:
    builder = EnvelopeBuilder(ASSET, "spooljob", ["scenes"], "balanced")
    outs = [PipelineOutput("scene", 1, i * 1000, (i + 1) * 1000,
                           {"index": i, "start_ms": i * 1000, "end_ms": (i + 1) * 1000})
            for i in range(n)]
    return [e.model_dump(mode="json") for e in builder.build(outs)][start:]


async def _count(store: Store, run_id: str | None = None) -> int:
    rows = await store.artifacts(ASSET, artifact_type="scene", run_id=run_id)
    return len(rows)


async def test_schema_error_is_raised_not_spooled(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 's.sqlite3'}")
    spool = Spool(store, tmp_path / "spool")
    try:
        bad = _envelopes(1)
        bad[0]["payload"] = {"index": "not a number"}
        with pytest.raises(SchemaError):
            await spool.ingest(bad)
        assert spool_status(tmp_path / "spool").files == 0
        assert await spool.ingest(_envelopes(2)) == 2
        assert spool.spooled_files == 0
    finally:
        await spool.close()
        await store.close()


async def test_unreachable_postgres_spools_then_flushes_exactly_once(
    tmp_path: Path, pg_db: PgDatabase
) -> None:
    store = await Store.open(pg_db.url)
    events: list[str] = []
    spool = Spool(store, tmp_path / "spool", retry_min_s=0.05, retry_max_s=0.2,
                  on_event=lambda kind, data: events.append(kind))
    try:
        env = _envelopes(9)
        assert await spool.ingest(env[:3]) == 3
        await pg_db.block()
        # the pool's connections were terminated and new ones are refused
        with pytest.raises(StoreError) as err:
            await store.ingest(env[3:4])
        assert is_unavailable(err.value)
        assert await spool.ingest(env[3:6]) == 0
        await spool.start_run("spooljob-scenes", ASSET, "scenes", "balanced", "w1")
        await spool.finish_run("spooljob-scenes", "completed")
        # while anything waits, later batches queue behind it (order kept)
        status = spool_status(tmp_path / "spool")
        assert (status.files, status.envelopes) == (3, 3)
        assert "spooled" in events
        left = await spool.flush(wait_s=0.3)  # still down: nothing lost, nothing applied
        assert left.files == 3
        await pg_db.unblock()
        done = await spool.flush(wait_s=10)
        assert done.files == 0 and done.rejected == 0
        assert await spool.ingest(env[6:]) == 3  # spool empty again: straight to the store
        assert await spool.ingest(env) == 0  # replays are harmless
        assert await _count(store) == 9
        run = await store.get_run("spooljob-scenes")
        assert run["status"] == "completed"
        assert "flushed" in events
    finally:
        await spool.close()
        await store.close()


async def test_a_flush_interrupted_before_delete_is_harmless(
    tmp_path: Path, pg_db: PgDatabase
) -> None:
    """Crash after the store took a spooled batch but before the file was deleted."""
    store = await Store.open(pg_db.url)
    spool = Spool(store, tmp_path / "spool")
    try:
        env = _envelopes(4)
        await spool.ingest(env[:2])
        (tmp_path / "spool").mkdir(exist_ok=True)
        (tmp_path / "spool" / "00000000000000000001-1-00000001-ingest.json").write_text(
            json.dumps({"v": 1, "op": "ingest", "job_id": "x", "seq": 1, "envelopes": env}))
        status = await Spool(store, tmp_path / "spool").flush()
        assert status.files == 0
        assert await _count(store) == 4
    finally:
        await spool.close()
        await store.close()


async def test_job_survives_a_database_outage(
    tmp_path: Path, make_video: Callable[..., Path], make_settings: MakeSettings,
    start_worker: StartWorker, pg_db: PgDatabase,
) -> None:
    """A real job: PostgreSQL goes away after the first stored batch and comes back later."""
    video = make_video(colors=("red", "blue", "green", "yellow", "white", "black") * 2,
                       seconds_each=1.0, size="320x240")
    await start_worker("gpu-db")
    settings = make_settings("laptop-db", role="client")
    store = await Store.open(pg_db.url)
    state = {"stored": 0, "blocked": False, "spooled": 0}
    reopened = asyncio.Event()

    async def reopen_later() -> None:
        await asyncio.sleep(1.0)
        await pg_db.unblock()
        reopened.set()

    tasks: list[asyncio.Task[None]] = []

    async def on_event(kind: str, data: dict[str, Any]) -> Awaitable[None] | None:
        if kind == "artifacts":
            state["stored"] += 1
            if not state["blocked"]:
                state["blocked"] = True
                await pg_db.block()  # before this batch is acked: the next ones find it down
        elif kind == "spooled":
            state["spooled"] += 1
            if not tasks:
                tasks.append(asyncio.create_task(reopen_later()))
        return None

    try:
        result = await submit_video(settings, video, store=store, pipelines=["metadata",
                                    "scenes"], options={"scenes": {"min_scene_len_ms": 200}},
                                    link_options=fast_link(), on_event=on_event,
                                    spool_wait_s=30)
        assert result.ok, result.error
        assert state["blocked"] and state["spooled"] >= 1
        assert result.spooled >= 1
        assert result.spool_pending == 0
        assert reopened.is_set()
        assert spool_status(settings.client.spool_dir).files == 0
        expected = sum(int(v["artifacts"]) for v in result.pipelines.values())
        scenes = await store.artifacts(result.asset_id, artifact_type="scene",
                                       run_id=f"{result.job_id}-scenes")
        meta = await store.artifacts(result.asset_id, artifact_type="video.metadata")
        assert len(scenes) == 12 and len(meta) == 1
        assert len(scenes) + len(meta) == expected
        assert len({s.artifact_id for s in scenes}) == 12
        run = await store.get_run(f"{result.job_id}-scenes")
        assert run["status"] == "completed"
    finally:
        for t in tasks:
            t.cancel()
        await store.close()
