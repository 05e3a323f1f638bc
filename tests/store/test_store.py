"""Store behaviour on SQLite and PostgreSQL: ingest, projections, selections, queries."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from rtc_annotator.artifacts import SchemaError, registry
from rtc_annotator.query import find, jump
from rtc_annotator.store import NotFound, Selection, SelectionError, Store, StoreError
from tests.store.conftest import env, new_asset


async def test_ingest_is_idempotent(store: Store) -> None:
    asset = new_asset()
    batch = [env(asset, "scene", i * 1000, i * 1000 + 999, index=i, ordinal=i) for i in range(5)]
    assert await store.ingest(batch) == 5
    assert await store.ingest([e.model_dump(mode="json") for e in batch]) == 0
    extra = env(asset, "scene", 9000, 9500, index=9, ordinal=9)
    assert await store.ingest([*batch, extra, extra]) == 1
    assert await store.count_artifacts(asset) == 6
    info = await store.get_asset(asset)
    assert info["artifact_counts"] == {"scene": 6}


async def test_one_bad_envelope_rolls_back_the_whole_batch(store: Store) -> None:
    asset = new_asset()
    batch = [env(asset, "object.detection", i * 10, ordinal=i).model_dump(mode="json")
             for i in range(4)]
    batch[2]["payload"]["confidence"] = 7
    with pytest.raises(SchemaError) as info:
        await store.ingest(batch)
    assert "envelope 2" in info.value.message
    assert await store.count_artifacts(asset) == 0
    assert await store.list_assets() == []


async def test_database_failure_in_projection_rolls_back_artifacts(store: Store) -> None:
    """A failure after the artifacts rows were written (in a projection) undoes all of it."""
    async with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            await conn.execute(sa.text(
                "ALTER TABLE object_labels ADD CONSTRAINT no_boom CHECK (label <> 'boom')"))
        else:
            await conn.execute(sa.text(
                "CREATE TRIGGER no_boom BEFORE INSERT ON object_labels WHEN new.label = 'boom' "
                "BEGIN SELECT RAISE(ABORT, 'boom'); END"))
    asset = new_asset()
    batch = [env(asset, "ocr.text", 0, text="alpha", ordinal=0),
             env(asset, "object.detection", 5, label="boom", ordinal=1)]
    with pytest.raises(StoreError) as info:
        await store.ingest(batch)
    assert info.value.code == "STORE_ERROR"
    assert await store.count_artifacts(asset) == 0
    async with store.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM text_segments"))).scalar() == 0
    assert await store.ingest(batch[:1]) == 1


async def test_projections_follow_ingest(store: Store) -> None:
    asset = new_asset()
    await store.ingest([
        env(asset, "transcript.segment", 0, 900, text="gradient descent works", ordinal=0),
        env(asset, "ocr.text", 500, 600, text="Gradient slide", ordinal=1),
        env(asset, "object.detection", 100, label="cat", ordinal=2),
        env(asset, "scene", 0, 5000, index=0, ordinal=3),
        env(asset, "video.metadata", 0, 5000, ordinal=4),
    ])
    async with store.engine.connect() as conn:
        counts = {t: (await conn.execute(sa.text(f"SELECT count(*) FROM {t}"))).scalar()
                  for t in ("text_segments", "object_labels", "scene_ranges", "run_summaries")}
    assert counts == {"text_segments": 2, "object_labels": 1, "scene_ranges": 1,
                      "run_summaries": 5}
    info = await store.get_asset(asset)
    assert info["duration_ms"] == 5000 and info["fps"] == 25.0
    assert info["variable_frame_rate"] is False


async def test_runs_lifecycle(store: Store) -> None:
    asset = new_asset()
    await store.upsert_asset(asset, "a.mp4", 1234, duration_ms=5000)
    await store.start_run("r1", asset, "scenes", "fast", "w1", "h")
    assert (await store.get_run("r1"))["status"] == "running"
    await store.finish_run("r1", "failed", error="boom")
    run = await store.get_run("r1")
    assert run["status"] == "failed" and run["error"] == "boom" and run["finished_at"]
    assert [r["run_id"] for r in await store.runs(asset)] == ["r1"]
    with pytest.raises(StoreError):
        await store.finish_run("r1", "exploded")
    with pytest.raises(NotFound):
        await store.finish_run("nope", "completed")
    assets = await store.list_assets()
    assert assets[0]["filename"] == "a.mp4" and assets[0]["size_bytes"] == 1234


async def test_unknown_asset_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.get_asset(new_asset())
    with pytest.raises(NotFound):
        await store.get_asset("../../etc/passwd")


async def test_time_span_and_run_queries(store: Store) -> None:
    asset = new_asset()
    await store.ingest([env(asset, "object.detection", t, t + 50, ordinal=t) for t in
                        range(0, 1000, 100)])
    got = await store.artifacts(asset, "object.detection", from_ms=220, to_ms=410)
    assert [e.span_start_ms for e in got] == [200, 300, 400]
    assert await store.artifacts(asset, run_id="other") == []
    pages = [e.span_start_ms async for e in store.iter_artifacts(asset, page=3)]
    assert pages == list(range(0, 1000, 100))


# -- selections --------------------------------------------------------------------------


async def _three_runs(store: Store) -> str:
    """Runs on one asset, ingested in this order: fast(completed), high_quality(failed),
    balanced(running). Each run has one scene whose start tells the run apart."""
    asset = new_asset()
    plan = [("r-fast", "fast", "completed", 1), ("r-hq", "high_quality", "failed", 2),
            ("r-bal", "balanced", "running", 3)]
    for run_id, profile, status, start in plan:
        await store.start_run(run_id, asset, "scenes", profile, "w", "h")
        if status != "running":
            await store.finish_run(run_id, status)
        await store.ingest([env(asset, "scene", start, run_id=run_id, profile=profile)])
    return asset


async def _selected_starts(store: Store, asset: str, sel: Selection | None = None) -> list[int]:
    if sel is not None:
        await store.set_selection(asset, "scene", sel)
    return [e.span_start_ms for e in await store.artifacts(asset, "scene")]


async def test_selection_default_prefers_completed_then_newest(store: Store) -> None:
    asset = await _three_runs(store)
    assert await store.get_selection(asset, "scene") == Selection()
    assert await _selected_starts(store, asset) == [1]
    await store.finish_run("r-fast", "cancelled")
    assert await _selected_starts(store, asset) == [3]  # running beats failed/cancelled
    assert len(await store.artifacts(asset, "scene", apply_selection=False)) == 3


async def test_selection_latest(store: Store) -> None:
    asset = await _three_runs(store)
    assert await _selected_starts(store, asset, Selection(mode="latest")) == [3]


async def test_selection_pinned(store: Store) -> None:
    asset = await _three_runs(store)
    assert await _selected_starts(store, asset, Selection(mode="pinned", run_id="r-hq")) == [2]
    assert await _selected_starts(store, asset, Selection(mode="pinned", run_id="gone")) == []
    got = await store.get_selection(asset, "scene")
    assert got.mode == "pinned" and got.run_id == "gone"


async def test_selection_profile(store: Store) -> None:
    asset = await _three_runs(store)
    sel = Selection(mode="profile", model_profile="fast")
    assert await _selected_starts(store, asset, sel) == [1]
    sel = Selection(mode="profile", model_profile="nonexistent")
    assert await _selected_starts(store, asset, sel) == []


async def test_selection_best_quality(store: Store) -> None:
    asset = await _three_runs(store)
    assert await _selected_starts(store, asset, Selection(mode="best_quality")) == [2]


async def test_selection_is_per_type_and_validated(store: Store) -> None:
    asset = await _three_runs(store)
    await store.ingest([env(asset, "object.detection", 7, run_id="r-fast", profile="fast")])
    await store.set_selection(asset, "scene", Selection(mode="latest"))
    assert [e.span_start_ms for e in await store.artifacts(asset)] == [3, 7]
    with pytest.raises(SelectionError):
        await store.set_selection(asset, "no.such.type", Selection())
    with pytest.raises(ValueError):
        Selection(mode="pinned")
    with pytest.raises(ValueError):
        Selection(mode="profile")
    assert await store.profiles(asset) == ["balanced", "fast", "high_quality"]
    assert await store.profiles(asset, "object.detection") == ["fast"]


async def test_reopen_keeps_data(store_url: str) -> None:
    asset = new_asset()
    s = await Store.open(store_url)
    await s.ingest([env(asset, "scene", 0)])
    await s.close()
    s = await Store.open(store_url)
    try:
        assert await s.count_artifacts(asset) == 1
    finally:
        await s.close()


async def test_bad_urls_are_store_errors() -> None:
    with pytest.raises(StoreError):
        await Store.open("mysql://x/y")
    with pytest.raises(StoreError):
        await Store.open("postgresql+asyncpg://postgres@127.0.0.1:1/nothing")


async def test_large_batches_take_the_bulk_path(store: Store) -> None:
    """Batches large enough for a worker thread: same results, same atomicity."""
    from rtc_annotator.store.repository import INGEST_THREAD_MIN

    asset = new_asset()
    n = INGEST_THREAD_MIN
    batch = [env(asset, "transcript.segment", i * 10, text=f"word{i} common", ordinal=i)
             for i in range(n)]
    batch += [env(asset, "object.detection", i, label="dog", ordinal=n + i) for i in range(n)]
    assert await store.ingest(batch) == 2 * n
    assert await store.ingest(batch) == 0
    assert await store.ingest(batch[:n] + [env(asset, "scene", 5, ordinal=9999)]) == 1
    async with store.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM text_segments"))).scalar() == n
    async with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            await conn.execute(sa.text(
                "ALTER TABLE object_labels ADD CONSTRAINT no_cat CHECK (label <> 'cat')"))
        else:
            await conn.execute(sa.text(
                "CREATE TRIGGER no_cat BEFORE INSERT ON object_labels WHEN new.label = 'cat' "
                "BEGIN SELECT RAISE(ABORT, 'cat'); END"))
    other = new_asset()
    bad = [env(other, "object.detection", i, label="cat", ordinal=i) for i in range(n)]
    with pytest.raises(StoreError):
        await store.ingest(bad)
    assert await store.count_artifacts(other) == 0
    assert await store.ingest(batch) == 0  # the connection is usable after the failure


async def test_bad_envelope_in_a_later_chunk_rolls_back_the_batch(store: Store) -> None:
    """Large batches are validated and written chunk by chunk in ONE transaction."""
    from rtc_annotator.store.repository import PG_CHUNK

    asset = new_asset()
    n = PG_CHUNK * 3 + 7
    batch = [env(asset, "object.detection", i, label="dog", ordinal=i).model_dump(mode="json")
             for i in range(n)]
    batch[-1]["payload"]["confidence"] = 7.0
    with pytest.raises(SchemaError) as info:
        await store.ingest(batch)
    assert info.value.message.startswith(f"envelope {n - 1}:")
    assert await store.count_artifacts(asset) == 0
    batch[-1] = env(asset, "scene", 3, ordinal=n).model_dump(mode="json")
    assert await store.ingest([*batch, batch[0], batch[PG_CHUNK + 1]]) == n
    assert await store.count_artifacts(asset) == n
    assert await store.ingest(batch) == 0
    hit = await jump(store, asset, "object", 0, "next", labels=["dog"])
    assert hit is not None and hit.span_start_ms == 1
    assert (await jump(store, asset, "scene", 0, "next")) is not None


async def test_nan_and_infinity_are_schema_errors() -> None:
    for bad in (float("nan"), float("inf")):
        with pytest.raises(SchemaError):
            registry.validate("video.metadata", 1, {
                "duration_ms": 1, "fps": bad, "variable_frame_rate": False, "codec": "h264",
                "width": 1, "height": 1, "size_bytes": 1})


async def test_sqlite_store_upgrades_from_0001_with_data(tmp_path: Any) -> None:
    """Revision 0002 rebuilds the projections; text stays findable, objects jumpable."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from rtc_annotator.store import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_async_engine(url)
    asset = new_asset()
    now = "2025-01-01 00:00:00.000000"
    async with engine.begin() as conn:
        await conn.run_sync(migrate.upgrade, "0001")
        for aid, atype, payload in (
            ("t1", "transcript.segment", '{"text": "gradient descent"}'),
            ("o1", "object.detection", '{"label": "dog"}'),
        ):
            await conn.execute(sa.text(
                "INSERT INTO artifacts VALUES (:aid, :asset, :t, 1, 100, 200, :p, 'x', '1', "
                "'balanced', 'c', 'i', 'run-1', :now)"),
                {"aid": aid, "asset": asset, "t": atype, "p": payload, "now": now})
            await conn.execute(sa.text(
                "INSERT INTO run_summaries VALUES (:asset, :t, 'run-1', 'balanced', 1, :now)"),
                {"asset": asset, "t": atype, "now": now})
        await conn.execute(sa.text(
            "INSERT INTO text_segments (artifact_id, asset_id, run_id, source, start_ms, end_ms, "
            "confidence, text) VALUES ('t1', :a, 'run-1', 'transcript', 100, 200, 0.9, "
            "'gradient descent')"), {"a": asset})
        await conn.execute(sa.text(
            "INSERT INTO object_labels VALUES ('o1', :a, 'run-1', 'dog', 0.8, 100, 200)"),
            {"a": asset})
    await engine.dispose()
    s = await Store.open(url)
    try:
        hit = await find(s, asset, "gradient", 0, "next")
        assert hit is not None and hit.artifact_id == "t1"
        found = await jump(s, asset, "object", 0, "next", labels=["dog"])
        assert found is not None and found.artifact_id == "o1"
        await s.ingest([env(asset, "transcript.segment", 300, text="gradient again",
                            run_id="run-1")])
        hit = await find(s, asset, "again", 0, "next")
        assert hit is not None and hit.start_ms == 300
    finally:
        await s.close()


async def test_jump_over_the_artifacts_table(store: Store) -> None:
    """Kinds without a projection (metadata) are read from artifacts, row and all."""
    asset = new_asset()
    first = env(asset, "video.metadata", 5, 3000, ordinal=0)
    second = env(asset, "video.metadata", 7, 3000, ordinal=1)
    await store.ingest([first, second])
    hit = await jump(store, asset, "metadata", 0, "next")
    assert hit is not None and hit.artifact_id == first.artifact_id
    assert hit.payload == first.payload
    nxt = await jump(store, asset, "metadata", 0, "next", cursor=hit.artifact_id)
    assert nxt is not None and nxt.artifact_id == second.artifact_id
    assert await jump(store, asset, "metadata", 0, "next", cursor=second.artifact_id) is None
    assert (await store.get_asset(asset))["duration_ms"] == 3000
