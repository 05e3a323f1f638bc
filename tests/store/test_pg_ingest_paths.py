"""PostgreSQL ingest paths and key order: a replayed batch, ids stored before a batch's later
chunk, and identifier columns that order by bytes whatever the database's collation."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from rtc_annotator.query import jump
from rtc_annotator.store import Store
from rtc_annotator.store.migrations.versions.v0004_c_collation_keys import KEY_COLUMNS
from rtc_annotator.store.repository import PG_FIRST_CHUNK
from tests.store.conftest import _admin, env, fresh_store_url, new_asset

REPO_LOG = "rtc_annotator.store.repository"


@pytest.fixture
async def pg_store(pg_url: str, tmp_path: Any) -> AsyncIterator[Store]:
    async for url in fresh_store_url("postgres", tmp_path, pg_url):
        store = await Store.open(url)
        try:
            yield store
        finally:
            await store.close()


async def _count(store: Store, table: str) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def _summary(store: Store, artifact_type: str) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(sa.text(
            "SELECT coalesce(sum(artifact_count), 0) FROM run_summaries "
            "WHERE artifact_type = :t"), {"t": artifact_type})).scalar_one())


async def test_replayed_batch_goes_the_conflict_safe_way_without_a_refused_copy(
    pg_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store = pg_store
    asset = new_asset()
    first = [env(asset, "object.detection", i * 10, label="dog", ordinal=i) for i in range(300)]
    more = [env(asset, "object.detection", i * 10, label="cat", ordinal=i)
            for i in range(300, 400)]
    assert await store.ingest(first) == 300
    caplog.set_level(logging.DEBUG, logger=REPO_LOG)
    # a replay (the worker's outbox after a reconnect) with new envelopes behind it
    assert await store.ingest(first + more) == 100
    assert "begins with stored artifacts" in caplog.text
    assert "stored already" not in caplog.text  # no copy was refused and rolled back
    assert await _count(store, "object_labels") == 400
    assert await _summary(store, "object.detection") == 400


async def test_stored_ids_after_the_first_chunk_roll_back_and_land_once(
    pg_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store = pg_store
    asset = new_asset()
    batch = [env(asset, "transcript.segment", i * 10, text=f"word{i}", ordinal=i)
             for i in range(PG_FIRST_CHUNK * 4)]
    stored = batch[PG_FIRST_CHUNK * 2:PG_FIRST_CHUNK * 2 + 5]  # in a later chunk only
    assert await store.ingest(stored) == 5
    caplog.set_level(logging.INFO, logger=REPO_LOG)
    assert await store.ingest(batch) == len(batch) - 5
    assert "stored already" in caplog.text  # the fast path's copy met them: fallback
    assert await _count(store, "artifacts") == len(batch)
    assert await _count(store, "text_segments") == len(batch)
    assert await _summary(store, "transcript.segment") == len(batch)
    assert await _count(store, "assets") == 1
    assert await store.ingest(batch) == 0


@pytest.fixture
async def icu_store(pg_url: str) -> AsyncIterator[Store]:
    """A store in a database whose default collation is ICU's en-US (linguistic order:
    ``a-1 < ab < B-1``), where byte order gives ``B-1 < a-1 < ab``."""
    name = "test_icu_" + secrets.token_hex(6)
    admin = await _admin(pg_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 "
                            "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
    except Exception as exc:  # a server built without ICU
        await admin.close()
        pytest.skip(f"cannot create an ICU database: {exc}")
    await admin.close()
    store = await Store.open(pg_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield store
    finally:
        await store.close()
        admin = await _admin(pg_url)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def _walk(store: Store, asset: str) -> list[str]:
    out: list[str] = []
    hit = await jump(store, asset, "scene", 0, "next")
    while hit is not None:
        out.append(hit.artifact_id)
        hit = await jump(store, asset, "scene", 0, "next", cursor=hit.artifact_id)
    return out


async def test_simultaneous_artifacts_step_in_byte_order_of_their_ids(
    icu_store: Store, tmp_path: Any
) -> None:
    ids = ["ab", "a-1", "B-1"]
    asset = new_asset()
    batch = []
    for i, artifact_id in enumerate(ids):
        d = env(asset, "scene", 500, 900, index=i, ordinal=i).model_dump(mode="json")
        d["artifact_id"] = artifact_id
        batch.append(d)
    sqlite = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'order.sqlite3'}")
    try:
        for store in (icu_store, sqlite):
            assert await store.ingest(batch) == 3
            assert await _walk(store, asset) == sorted(ids, key=str.encode)  # B-1, a-1, ab
    finally:
        await sqlite.close()


async def test_key_columns_are_in_the_c_collation(pg_store: Store) -> None:
    async with pg_store.engine.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"))).all()
    collation = {(t, c): n for t, c, n in rows}
    for table, columns in KEY_COLUMNS.items():
        for column, _length in columns:
            assert collation[(table, column)] == "C", (table, column)
