"""The PostgreSQL writers of a prepared ingest chunk.

The fast path: :func:`replayed` asks once per batch, with the ids of its first (small) chunk,
whether the batch is a replay of stored artifacts; if not, :func:`copy_chunk` writes each
chunk's rows with binary ``COPY`` straight into ``artifacts`` and the projections (asyncpg
encodes the rows, the server parses nothing but the payload's JSON), and :func:`add_summaries`
inserts the batch's missing assets and updates ``run_summaries`` with one statement at the end.
The artifacts' primary key is the only check for ids stored already: a chunk that meets one
(part of the batch was stored before, or a concurrent writer stored it meanwhile) is refused
(:class:`Conflict`), and the caller rolls the transaction back and writes the batch again
through the conflict-safe path below.

The conflict-safe path: ``COPY`` into a staging table, then one statement that moves the rows
into ``artifacts`` (``ON CONFLICT DO NOTHING``) and the projections. Per chunk there are two
exchanges with the server:

1. ``COPY`` of the chunk's rows into ``rtca_ingest_stage``, a temporary table of the session
   (no indexes, no WAL): asyncpg encodes the rows in binary, so the server parses nothing but
   the payload's JSON. This is the cheap part for the server.
2. :data:`MOVE_SQL`: data-modifying CTEs empty the stage (``DELETE ... RETURNING``), insert the
   missing assets, the artifacts (``ON CONFLICT (artifact_id) DO NOTHING``, so ids already
   stored, or stored meanwhile by a concurrent writer, are skipped), the projection rows of
   the artifacts actually inserted, and the run summaries. This is where the server does
   the work (indexes, GIN, ``tsvector``): one round trip, during which the caller validates
   the next chunk.

Rows move in ``artifact_id`` order, so concurrent writers lock alike. The stage is created
once per session (``ON COMMIT DELETE ROWS``: nothing outlives a transaction); a session that
lost it (a pooler handing out another server connection) gets it again from
:func:`ensure_stage`, which every conflict-safe transaction calls first.
"""

from __future__ import annotations

from typing import Any

from asyncpg.exceptions import (  # type: ignore[import-untyped]
    DeadlockDetectedError,
    UniqueViolationError,
)

from rtc_annotator.store.batch import (
    ENVELOPE_FIELDS,
    OBJECT_COLS,
    SCENE_COLS,
    TEXT_COLS,
    Prepared,
)

STAGE = "rtca_ingest_stage"
# kind of projection row a staged artifact carries
NONE, TEXT, OBJECT, SCENE = 0, 1, 2, 3
EXTRA_COLS = ("kind", "source", "confidence", "label", "text", "scene_index")
STAGE_COLS = ENVELOPE_FIELDS + EXTRA_COLS
_NO_EXTRA: tuple[Any, ...] = (NONE, None, None, None, None, None)

_TYPES = {
    "artifact_id": "text", "asset_id": "text", "artifact_type": "text", "schema_version": "int",
    "span_start_ms": "bigint", "span_end_ms": "bigint", "payload": "jsonb", "producer": "text",
    "producer_version": "text", "model_profile": "text", "config_hash": "text",
    "input_hash": "text", "run_id": "text", "created_at": "timestamptz", "kind": "smallint",
    "source": "text", "confidence": "float8", "label": "text", "text": "text",
    "scene_index": "int",
}
assert set(_TYPES) == set(STAGE_COLS)

STAGE_SQL = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} ("
    + ", ".join(f"{c} {_TYPES[c]}" for c in STAGE_COLS)
    + ") ON COMMIT DELETE ROWS"
)

# projection columns, taken from the staged row (the names the projections use for the span)
_FROM_STAGE = {"start_ms": "st.span_start_ms", "end_ms": "st.span_end_ms"}


def _projection(table: str, cols: tuple[str, ...], kind: int) -> str:
    values = ", ".join(_FROM_STAGE.get(c, f"st.{c}") for c in cols)
    return (f"p_{table} AS (INSERT INTO {table} ({', '.join(cols)}) SELECT {values} "
            f"FROM st JOIN ins USING (artifact_id) WHERE st.kind = {kind})")


def _move_sql() -> str:
    art = ", ".join(ENVELOPE_FIELDS)
    projections = ", ".join((
        _projection("text_segments", TEXT_COLS, TEXT),
        _projection("object_labels", OBJECT_COLS, OBJECT),
        _projection("scene_ranges", SCENE_COLS, SCENE),
    ))
    return (
        f"WITH st AS (DELETE FROM {STAGE} RETURNING *), "
        "a AS (INSERT INTO assets (asset_id, filename, created_at) "
        "SELECT DISTINCT asset_id, '', now() FROM st ORDER BY 1 "
        "ON CONFLICT (asset_id) DO NOTHING), "
        f"ins AS (INSERT INTO artifacts ({art}) SELECT {art} FROM st ORDER BY artifact_id "
        "ON CONFLICT (artifact_id) DO NOTHING "
        "RETURNING artifact_id, asset_id, artifact_type, run_id, model_profile, created_at), "
        f"{projections}, "
        "s AS (INSERT INTO run_summaries (asset_id, artifact_type, run_id, model_profile, "
        "artifact_count, last_created_at) SELECT asset_id, artifact_type, run_id, "
        "min(model_profile), count(*), max(created_at) FROM ins GROUP BY 1, 2, 3 "
        "ORDER BY 1, 2, 3 ON CONFLICT (asset_id, artifact_type, run_id) DO UPDATE SET "
        "artifact_count = run_summaries.artifact_count + excluded.artifact_count, "
        "last_created_at = greatest(run_summaries.last_created_at, excluded.last_created_at)) "
        "SELECT artifact_id FROM ins"
    )


MOVE_SQL = _move_sql()
METADATA_SQL = ("UPDATE assets SET duration_ms = $1, fps = $2, variable_frame_rate = $3, "
                "size_bytes = $4 WHERE asset_id = $5")


REPLAYED_SQL = "SELECT EXISTS (SELECT 1 FROM artifacts WHERE artifact_id = ANY($1::text[]))"
SUMMARIES_SQL = (
    "WITH a AS (INSERT INTO assets (asset_id, filename, created_at) "
    "SELECT a, '', now() FROM unnest($7::text[]) AS a ORDER BY a "
    "ON CONFLICT (asset_id) DO NOTHING) "
    "INSERT INTO run_summaries (asset_id, artifact_type, run_id, model_profile, "
    "artifact_count, last_created_at) SELECT * FROM unnest($1::text[], $2::text[], "
    "$3::text[], $4::text[], $5::bigint[], $6::timestamptz[]) "
    "ON CONFLICT (asset_id, artifact_type, run_id) DO UPDATE SET "
    "artifact_count = run_summaries.artifact_count + excluded.artifact_count, "
    "last_created_at = greatest(run_summaries.last_created_at, excluded.last_created_at)"
)
_PROJECTIONS = (("text_segments", "texts", TEXT_COLS), ("object_labels", "objects", OBJECT_COLS),
                ("scene_ranges", "scenes", SCENE_COLS))


class Conflict(Exception):
    """A chunk on the fast path met artifact ids stored already (before this batch, or by a
    concurrent writer meanwhile), or its inserts deadlocked with a concurrent writer's and
    the server chose this one."""


async def replayed(apg: Any, ids: list[str]) -> bool:
    """Whether any of ``ids`` (a batch's first chunk) is stored already: then the batch is
    (partly) a replay, and the conflict-safe path is the cheaper one."""
    return bool(await apg.fetchval(REPLAYED_SQL, ids))


async def copy_chunk(apg: Any, prep: Prepared) -> Prepared:
    """Fast path: write the chunk with ``COPY``; return it.

    Raises :class:`Conflict` when the copy meets an id stored already, or deadlocks with a
    writer inserting the same ids in another order. ``prep.artifact_rows`` are in
    ``artifact_id`` order (the caller sorts them while preparing), so two writers of one
    chunk's ids lock them alike.
    """
    try:
        await apg.copy_records_to_table("artifacts", records=prep.artifact_rows,
                                        columns=ENVELOPE_FIELDS)
        for table, attr, cols in _PROJECTIONS:
            rows = getattr(prep, attr)
            if rows:
                await apg.copy_records_to_table(table, records=rows, columns=cols)
    except (UniqueViolationError, DeadlockDetectedError) as exc:
        raise Conflict(str(exc)) from None
    return prep


async def add_summaries(apg: Any, written: list[Prepared]) -> None:
    """Fast path, once per batch: the missing assets, ``run_summaries`` and video metadata
    of what was written."""
    keys = [k for prep in written for k in prep.summary_keys]
    if keys:
        rows = Prepared(summary_keys=keys).summaries()
        assets = sorted(set().union(*(prep.asset_ids for prep in written)))
        await apg.execute(SUMMARIES_SQL, *(list(col) for col in zip(*rows, strict=True)),
                          assets)
    for prep in written:
        for _aid, asset, duration, fps, vfr, size in prep.metadata:
            await apg.execute(METADATA_SQL, duration, fps, vfr, size, asset)


def stage_rows(prep: Prepared) -> list[tuple[Any, ...]]:
    """One staging row per artifact: its columns, then its projection's (``EXTRA_COLS``)."""
    extra: dict[str, tuple[Any, ...]] = {}
    for aid, _asset, _run, source, _s, _e, confidence, text in prep.texts:
        extra[aid] = (TEXT, source, confidence, None, text, None)
    for aid, _asset, _run, label, confidence, _s, _e in prep.objects:
        extra[aid] = (OBJECT, None, confidence, label, None, None)
    for aid, _asset, _run, index, _s, _e in prep.scenes:
        extra[aid] = (SCENE, None, None, None, None, index)
    return [row + extra.get(row[0], _NO_EXTRA) for row in prep.artifact_rows]


async def ensure_stage(apg: Any) -> None:
    """Create this session's staging table if it does not exist yet."""
    await apg.execute(STAGE_SQL)


async def stage(apg: Any, rows: list[tuple[Any, ...]]) -> None:
    """Exchange 1: ``COPY`` the chunk's rows into the stage."""
    await apg.copy_records_to_table(STAGE, records=rows, columns=STAGE_COLS)


async def move(apg: Any, prep: Prepared) -> int:
    """Exchange 2: move the staged rows into place; return how many artifacts were new."""
    fresh = {r[0] for r in await apg.fetch(MOVE_SQL)}
    for aid, asset, duration, fps, vfr, size in prep.metadata:
        if aid in fresh:
            await apg.execute(METADATA_SQL, duration, fps, vfr, size, asset)
    return len(fresh)
