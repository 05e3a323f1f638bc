"""Jump and find: next/previous artifact of a kind, next/previous text match.

Order is always (start_ms, end_ms, artifact_id). Without a cursor, ``next`` returns the first
artifact starting strictly after ``from_ms`` and ``prev`` the last one starting strictly before
it. With ``cursor`` (the artifact id a previous answer returned) the answer is the neighbour of
that artifact in the order, so artifacts that start at the same time are each reachable.
The selection policy of the (video, type) decides which run counts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rtc_annotator.artifacts.envelope import ArtifactEnvelope
from rtc_annotator.artifacts.schemas import registry
from rtc_annotator.query.text import QueryError, parse, to_fts5, to_websearch
from rtc_annotator.store.repository import (
    Store,
    artifacts_t,
    check_asset_id,
    envelope_from_row,
    objects_t,
    scenes_t,
    text_t,
)
from rtc_annotator.store.selection import Selection

Direction = Literal["next", "prev"]
Source = Literal["transcript", "ocr", "all"]
KINDS = {
    "transcript": "transcript.segment",
    "scene": "scene",
    "object": "object.detection",
    "ocr": "ocr.text",
    "metadata": "video.metadata",
}
SOURCE_TYPES = {"transcript": "transcript.segment", "ocr": "ocr.text"}


@dataclass(frozen=True)
class FindHit:
    """One text match."""

    artifact_id: str
    source: str
    start_ms: int
    end_ms: int
    text: str
    snippet: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def artifact_type_for(kind: str) -> str:
    """Map a kind (``object``) or a full type name (``object.detection``) to the type."""
    if kind in KINDS:
        return KINDS[kind]
    if kind in {t for t, _ in registry.known()}:
        return kind
    raise QueryError(f"unknown kind {kind!r}", hint="kinds: " + ", ".join(KINDS))


def _check_cursor(cursor: str | None) -> None:
    """A cursor is an artifact id a previous answer returned: printable ASCII, 1-64 chars."""
    if cursor is not None and not (0 < len(cursor) <= 64 and cursor.isascii()
                                   and cursor.isprintable() and " " not in cursor):
        raise QueryError("cursor is not an artifact id",
                         hint="pass the artifact id of a previous jump/find answer")


def _check_direction(direction: str) -> None:
    if direction not in ("next", "prev"):
        raise QueryError(f"unknown direction {direction!r}", hint="use next or prev")


async def jump(
    store: Store,
    asset_id: str,
    kind: str,
    from_ms: int = 0,
    direction: str = "next",
    *,
    labels: list[str] | None = None,
    min_confidence: float | None = None,
    cursor: str | None = None,
    selection: Selection | None = None,
) -> ArtifactEnvelope | None:
    """The next/previous artifact of ``kind``, or ``None`` when there is none."""
    check_asset_id(asset_id)
    _check_direction(direction)
    _check_cursor(cursor)
    atype = artifact_type_for(kind)
    if labels and atype != "object.detection":
        raise QueryError("label filters apply to kind 'object' only", hint="drop --label")
    if min_confidence is not None and atype not in ("object.detection", "transcript.segment",
                                                     "ocr.text"):
        raise QueryError(f"kind {kind!r} has no confidence", hint="drop --min-confidence")
    # one connection for the selection and the jump; the artifact row comes with the jump
    async with store._connect() as conn:
        run = await store.selected_run(asset_id, atype, selection, conn=conn)
        if run is None:
            return None
        row = await _jump_row(conn, asset_id, kind, atype, run, from_ms, direction, labels,
                              min_confidence, cursor)
    return None if row is None else envelope_from_row(row)


async def _jump_row(conn: AsyncConnection, asset_id: str, kind: str, atype: str, run: str,
                    from_ms: int, direction: str, labels: list[str] | None,
                    min_confidence: float | None, cursor: str | None) -> Any:
    table: sa.Table
    if atype == "object.detection":
        table = objects_t
    elif atype in SOURCE_TYPES.values():
        table = text_t
    elif atype == "scene":
        table = scenes_t
    else:
        table = artifacts_t
    c = table.c
    start = c.span_start_ms if table is artifacts_t else c.start_ms
    end = c.span_end_ms if table is artifacts_t else c.end_ms
    conds: list[sa.ColumnElement[bool]] = [c.asset_id == asset_id, c.run_id == run]
    if table is artifacts_t:
        conds.append(c.artifact_type == atype)
    if table is text_t:
        conds.append(c.source == ("transcript" if atype == "transcript.segment" else "ocr"))
    if labels:
        conds.append(c.label.in_(labels))
    if min_confidence is not None:
        conds.append(c.confidence >= min_confidence)
    key = sa.tuple_(start, end, c.artifact_id)
    if cursor is not None:
        # the cursor's position comes from the artifacts' primary key (projections are
        # keyed by their query order, not by artifact id)
        a = artifacts_t.c
        row = (await conn.execute(
            sa.select(a.span_start_ms, a.span_end_ms).where(
                a.artifact_id == cursor, a.asset_id == asset_id, a.run_id == run,
                a.artifact_type == atype))).first()
        if row is None:
            raise QueryError(f"cursor {cursor[:80]!r} is not a selected {kind} of this video",
                             hint="pass the artifact_id a previous jump returned")
        pos = sa.tuple_(sa.literal(row[0]), sa.literal(row[1]), sa.literal(cursor))
        conds.append(key > pos if direction == "next" else key < pos)
    else:
        conds.append(start > from_ms if direction == "next" else start < from_ms)
    cols = [start, end, c.artifact_id]
    order = [o.desc() for o in cols] if direction == "prev" else cols
    found = (sa.select(c.artifact_id).where(*conds).order_by(*order).limit(1)
             .correlate(None).scalar_subquery())
    return (await conn.execute(
        sa.select(artifacts_t).where(artifacts_t.c.artifact_id == found))).first()


async def find(
    store: Store,
    asset_id: str,
    text: str,
    from_ms: int = 0,
    direction: str = "next",
    *,
    source: str = "all",
    cursor: str | None = None,
    selection: Selection | None = None,
) -> FindHit | None:
    """The next/previous transcript or OCR segment matching ``text``, with a snippet."""
    check_asset_id(asset_id)
    _check_direction(direction)
    _check_cursor(cursor)
    if source not in ("transcript", "ocr", "all"):
        raise QueryError(f"unknown source {source!r}", hint="use transcript, ocr or all")
    phrases = parse(text)
    params: dict[str, Any] = {"asset": asset_id, "from_ms": from_ms}
    async with store._connect() as conn:
        runs = []
        for name, atype in SOURCE_TYPES.items():
            if source in (name, "all"):
                run = await store.selected_run(asset_id, atype, selection, conn=conn)
                if run is not None:
                    params[f"run_{name}"] = run
                    runs.append(f"(ts.source = '{name}' AND ts.run_id = :run_{name})")
        if not runs:
            return None
        cmp = ">" if direction == "next" else "<"
        desc = "" if direction == "next" else " DESC"
        if cursor is not None:
            a = artifacts_t.c
            row = (await conn.execute(
                sa.select(a.span_start_ms, a.span_end_ms).where(
                    a.artifact_id == cursor, a.asset_id == asset_id,
                    a.artifact_type.in_(list(SOURCE_TYPES.values()))))).first()
            if row is None:
                raise QueryError(f"cursor {cursor[:80]!r} is no text segment of this video",
                                 hint="pass the artifact_id a previous find returned")
            params.update(cs=row[0], ce=row[1], cid=cursor)
            position = f"(ts.start_ms, ts.end_ms, ts.artifact_id) {cmp} (:cs, :ce, :cid)"
        else:
            position = f"ts.start_ms {cmp} :from_ms"
        where = f"ts.asset_id = :asset AND ({' OR '.join(runs)}) AND {position}"
        order = f"ts.start_ms{desc}, ts.end_ms{desc}, ts.artifact_id{desc}"
        if store.dialect == "postgresql":
            params["q"] = to_websearch(phrases)
            sql = (
                "SELECT ts.artifact_id, ts.source, ts.start_ms, ts.end_ms, ts.text, "
                "ts_headline('simple', ts.text, q.query, "
                "'StartSel=[, StopSel=], MaxWords=24, MinWords=8, MaxFragments=1') "
                "FROM text_segments ts, websearch_to_tsquery('simple', :q) AS q(query) "
                f"WHERE ts.tsv @@ q.query AND {where} ORDER BY {order} LIMIT 1"
            )
        else:
            params["q"] = to_fts5(phrases)
            sql = (
                "SELECT ts.artifact_id, ts.source, ts.start_ms, ts.end_ms, ts.text, "
                "snippet(text_segments_fts, 0, '[', ']', '...', 16) "
                # CROSS JOIN keeps the FTS match as the outer loop (SQLite would otherwise walk
                # every segment of the video after from_ms and probe the index per row)
                "FROM text_segments_fts CROSS JOIN text_segments ts "
                "ON ts.id = text_segments_fts.rowid "
                f"WHERE text_segments_fts MATCH :q AND {where} ORDER BY {order} LIMIT 1"
            )
        row = (await conn.execute(sa.text(sql), params)).first()
    if row is None:
        return None
    aid, src, start, end, full, snip = tuple(row)
    return FindHit(artifact_id=aid, source=src, start_ms=int(start), end_ms=int(end),
                   text=full, snippet=snip or full)
