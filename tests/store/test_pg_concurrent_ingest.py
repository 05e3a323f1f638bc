"""PostgreSQL ingest against a concurrent writer: the fast COPY path meets rows another
transaction stored meanwhile, rolls back and writes the batch again with ON CONFLICT."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa

from rtc_annotator.store import Store
from tests.store.conftest import _admin, env, fresh_store_url, new_asset


@pytest.fixture
async def pg_store(pg_url: str, tmp_path: Any) -> Any:
    async for url in fresh_store_url("postgres", tmp_path, pg_url):
        store = await Store.open(url)
        try:
            yield store, url
        finally:
            await store.close()


async def _counts(store: Store) -> dict[str, int]:
    async with store.engine.connect() as conn:
        out = {}
        for table in ("artifacts", "text_segments", "object_labels", "scene_ranges"):
            out[table] = (await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar()
        rows = (await conn.execute(sa.text(
            "SELECT artifact_type, artifact_count FROM run_summaries"))).all()
    out.update({f"summary:{t}": int(n) for t, n in rows})
    return out


async def test_copy_meeting_a_concurrent_writer_falls_back_to_on_conflict(
    pg_store: tuple[Store, str], caplog: pytest.LogCaptureFixture
) -> None:
    store, url = pg_store
    from rtc_annotator.store.repository import PG_CHUNK

    asset = new_asset()
    n = PG_CHUNK + 10  # two chunks: the conflict is in the second
    batch = [env(asset, "transcript.segment", i * 10, text=f"w{i}", ordinal=i)
             for i in range(n)]
    batch += [env(asset, "object.detection", i, label="dog", ordinal=n + i) for i in range(5)]
    taken = batch[PG_CHUNK + 3]
    # another writer inserts one of the ids and holds its transaction open
    other = await _admin(url)
    tx = other.transaction()
    await tx.start()
    await _insert(other, taken)
    caplog.set_level(logging.INFO, logger="rtc_annotator.store.repository")
    ingest = asyncio.ensure_future(store.ingest(batch))
    await asyncio.sleep(0.5)
    assert not ingest.done()  # the copy waits for the other writer's row lock
    await tx.commit()
    await other.close()
    new = await asyncio.wait_for(ingest, 30)

    assert new == len(batch) - 1  # everything but the id the other writer stored
    assert "concurrent writer" in caplog.text  # it went through the fallback path
    counts = await _counts(store)
    assert counts["artifacts"] == len(batch)
    # projections only for what this ingest inserted (the other writer wrote none)
    assert counts["text_segments"] == n - 1
    assert counts["object_labels"] == 5
    assert counts["summary:transcript.segment"] == n - 1
    assert counts["summary:object.detection"] == 5
    assert await store.ingest(batch) == 0


async def test_fast_path_summaries_add_up_across_chunks_and_batches(
    pg_store: tuple[Store, str]
) -> None:
    store, _ = pg_store
    from rtc_annotator.store.repository import PG_CHUNK

    asset = new_asset()
    first = [env(asset, "scene", i * 100, index=i, ordinal=i) for i in range(PG_CHUNK * 2 + 1)]
    second = [env(asset, "scene", i * 100, index=i, ordinal=i)
              for i in range(PG_CHUNK * 2 + 1, PG_CHUNK * 2 + 51)]
    assert await store.ingest(first) == len(first)
    assert await store.ingest(first[:10] + second) == len(second)
    counts = await _counts(store)
    assert counts["summary:scene"] == counts["scene_ranges"] == len(first) + len(second)


async def test_copy_deadlocking_with_a_concurrent_writer_still_lands(
    pg_store: tuple[Store, str]
) -> None:
    """Another writer holds the batch's last id and then inserts its first: the two wait on
    each other. PostgreSQL aborts one of them; whichever it is, the batch lands whole."""
    import asyncpg  # type: ignore[import-untyped]

    store, url = pg_store
    asset = new_asset()
    batch = [env(asset, "object.detection", i * 10, label="cat", ordinal=i) for i in range(40)]
    by_id = sorted(batch, key=lambda e: e.artifact_id)
    first, last = by_id[0], by_id[-1]
    other = await _admin(url)
    tx = other.transaction()
    await tx.start()
    await _insert(other, last)
    ingest = asyncio.ensure_future(store.ingest(batch))
    await asyncio.sleep(0.3)  # the copy has inserted ``first`` and waits for ``last``
    assert not ingest.done()
    other_won = True
    try:
        await _insert(other, first)  # now each waits for the other: a deadlock
        await tx.commit()
    except asyncpg.exceptions.DeadlockDetectedError:
        other_won = False
        await tx.rollback()
    finally:
        await other.close()
    new = await asyncio.wait_for(ingest, 30)
    assert new == (len(batch) - 2 if other_won else len(batch))
    counts = await _counts(store)
    assert counts["artifacts"] == len(batch)
    assert counts["object_labels"] == counts["summary:object.detection"] == new


async def _insert(conn: Any, e: Any) -> None:
    row = e.model_dump()
    await conn.execute(
        "INSERT INTO artifacts (artifact_id, asset_id, artifact_type, schema_version, "
        "span_start_ms, span_end_ms, payload, producer, producer_version, model_profile, "
        "config_hash, input_hash, run_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, "
        "$7::jsonb, $8, $9, $10, $11, $12, $13, $14)",
        row["artifact_id"], row["asset_id"], row["artifact_type"], row["schema_version"],
        row["span_start_ms"], row["span_end_ms"], json.dumps(row["payload"]),
        row["producer"], row["producer_version"], row["model_profile"], row["config_hash"],
        row["input_hash"], row["run_id"], row["created_at"])
