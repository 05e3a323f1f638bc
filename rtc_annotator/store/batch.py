"""An ingest batch, validated and turned into rows once; the SQLite writer of such a batch.

:func:`prepare_batch` validates every envelope (payload through its registered schema, exactly
once), drops repeated artifact ids, and builds the row tuples of ``artifacts`` and of the
projections. It is pure CPU work, so the store runs it in a worker thread for large batches.
:func:`sqlite_write` writes a prepared batch with raw ``executemany`` on the sqlite3 connection
that SQLAlchemy's transaction holds; it runs on aiosqlite's thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rtc_annotator.artifacts.envelope import ArtifactEnvelope, check_envelope

# column order of the artifact rows built below
ENVELOPE_FIELDS = ("artifact_id", "asset_id", "artifact_type", "schema_version", "span_start_ms",
                   "span_end_ms", "payload", "producer", "producer_version", "model_profile",
                   "config_hash", "input_hash", "run_id", "created_at")
assert set(ENVELOPE_FIELDS) == set(ArtifactEnvelope.model_fields)
TEXT_SOURCES = {"transcript.segment": "transcript", "ocr.text": "ocr"}
TEXT_COLS = ("artifact_id", "asset_id", "run_id", "source", "start_ms", "end_ms", "confidence",
             "text")
OBJECT_COLS = ("artifact_id", "asset_id", "run_id", "label", "confidence", "start_ms", "end_ms")
SCENE_COLS = ("artifact_id", "asset_id", "run_id", "scene_index", "start_ms", "end_ms")
SUMMARY_COLS = ("asset_id", "artifact_type", "run_id", "model_profile", "artifact_count",
                "last_created_at")


def sqlite_time(value: datetime) -> str:
    """A UTC time as SQLAlchemy's SQLite ``DateTime`` stores it (sortable text)."""
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]


@dataclass
class Prepared:
    """A validated batch: unique artifact ids and the rows to write for them."""

    ids: list[str] = field(default_factory=list)
    artifact_rows: list[tuple[Any, ...]] = field(default_factory=list)  # ENVELOPE_FIELDS order
    summary_keys: list[tuple[Any, ...]] = field(default_factory=list)  # asset,type,run,prof,time
    texts: list[tuple[Any, ...]] = field(default_factory=list)  # TEXT_COLS
    objects: list[tuple[Any, ...]] = field(default_factory=list)  # OBJECT_COLS
    scenes: list[tuple[Any, ...]] = field(default_factory=list)  # SCENE_COLS
    metadata: list[tuple[Any, ...]] = field(default_factory=list)  # id,asset,dur,fps,vfr,size
    asset_ids: set[str] = field(default_factory=set)

    def only(self, keep: set[str]) -> Prepared:
        """The part of the batch whose artifact ids are in ``keep``."""
        if len(keep) == len(self.ids):
            return self
        return Prepared(
            ids=[i for i in self.ids if i in keep],
            artifact_rows=[r for r in self.artifact_rows if r[0] in keep],
            summary_keys=[k for i, k in zip(self.ids, self.summary_keys, strict=True)
                          if i in keep],
            texts=[r for r in self.texts if r[0] in keep],
            objects=[r for r in self.objects if r[0] in keep],
            scenes=[r for r in self.scenes if r[0] in keep],
            metadata=[r for r in self.metadata if r[0] in keep],
            asset_ids=self.asset_ids,
        )

    def summaries(self) -> list[tuple[Any, ...]]:
        """``run_summaries`` rows (SUMMARY_COLS) of the batch, sorted by key."""
        acc: dict[tuple[str, str, str], list[Any]] = {}
        for asset, atype, run, profile, created in self.summary_keys:
            entry = acc.get((asset, atype, run))
            if entry is None:
                acc[(asset, atype, run)] = [profile, 1, created]
            else:
                entry[1] += 1
                if created > entry[2]:
                    entry[2] = created
        return [(a, t, r, v[0], v[1], v[2]) for (a, t, r), v in sorted(acc.items())]


def prepare_batch(envelopes: Sequence[ArtifactEnvelope | dict[str, Any]],
                  sqlite_times: bool = False, seen: set[str] | None = None,
                  first_index: int = 0, yield_every: int = 0) -> Prepared:
    """Validate every envelope and build its rows; raise ``SchemaError`` naming the index.

    The payload is the validated model as compact JSON text (made by pydantic-core). Times are
    SQLite text (as SQLAlchemy stores them) when ``sqlite_times``, else datetimes (the
    PostgreSQL writer sends them in binary ``COPY``).
    Ids in ``seen`` (updated) are skipped, so consecutive chunks of one batch share it;
    ``first_index`` is the index of ``envelopes[0]`` in the whole batch, for error messages.
    ``yield_every`` (in a worker thread): release the GIL after this many envelopes, so the
    event loop's thread is not kept waiting for the interpreter's 5 ms switch interval.
    """
    prep = Prepared()
    seen = set() if seen is None else seen
    for index, value in enumerate(envelopes, first_index):
        if yield_every and index % yield_every == 0:
            time.sleep(0)
        e, p = check_envelope(value, index)
        aid = e.artifact_id
        if aid in seen:
            continue
        seen.add(aid)
        created: Any = sqlite_time(e.created_at) if sqlite_times else e.created_at
        prep.ids.append(aid)
        prep.asset_ids.add(e.asset_id)
        prep.artifact_rows.append((
            aid, e.asset_id, e.artifact_type, e.schema_version, e.span_start_ms, e.span_end_ms,
            p.__pydantic_serializer__.to_json(p).decode(),
            e.producer, e.producer_version,
            e.model_profile, e.config_hash, e.input_hash, e.run_id, created,
        ))
        atype = e.artifact_type
        prep.summary_keys.append((e.asset_id, atype, e.run_id, e.model_profile, created))
        # projection fields are read from the validated payload model (same names in every
        # version of a schema the projections know)
        q: Any = p
        if atype in TEXT_SOURCES:
            prep.texts.append((aid, e.asset_id, e.run_id, TEXT_SOURCES[atype], e.span_start_ms,
                               e.span_end_ms, q.confidence, q.text))
        elif atype == "object.detection":
            prep.objects.append((aid, e.asset_id, e.run_id, q.label, q.confidence,
                                 e.span_start_ms, e.span_end_ms))
        elif atype == "scene":
            prep.scenes.append((aid, e.asset_id, e.run_id, q.index, e.span_start_ms,
                                e.span_end_ms))
        elif atype == "video.metadata":
            prep.metadata.append((aid, e.asset_id, q.duration_ms, q.fps,
                                  q.variable_frame_rate, q.size_bytes))
    return prep


_INSERT_ARTIFACT = (
    f"INSERT INTO artifacts ({', '.join(ENVELOPE_FIELDS)}) "
    f"VALUES ({', '.join('?' * len(ENVELOPE_FIELDS))})"
)
_UPSERT_SUMMARY = (
    f"INSERT INTO run_summaries ({', '.join(SUMMARY_COLS)}) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (asset_id, artifact_type, run_id) DO UPDATE SET "
    "artifact_count = artifact_count + excluded.artifact_count, "
    "last_created_at = max(last_created_at, excluded.last_created_at)"
)


def sqlite_write(db: sqlite3.Connection, prep: Prepared) -> int:
    """Write ``prep`` on ``db`` inside the caller's transaction; return how many were new.

    The first statement writes, so the transaction holds SQLite's write lock from then on and
    the check for stored ids cannot race another writer. ``text_segments`` ids grow (rowid =
    max + 1), so the new segments are those above the old maximum; their FTS5 entries are
    added with one ``INSERT ... SELECT``.
    """
    now = sqlite_time(datetime.now(UTC))
    db.executemany("INSERT OR IGNORE INTO assets (asset_id, filename, created_at) "
                   "VALUES (?, '', ?)", [(a, now) for a in sorted(prep.asset_ids)])
    if not db.in_transaction:  # sqlite3 opens it implicitly before a write; never autocommit
        raise sqlite3.OperationalError("ingest is not inside a transaction")
    stored = {r[0] for r in db.execute(
        "SELECT artifact_id FROM artifacts WHERE artifact_id IN (SELECT value FROM json_each(?))",
        (json.dumps(prep.ids),))}
    if stored:
        prep = prep.only(set(prep.ids) - stored)
        if not prep.ids:
            return 0
    db.executemany(_INSERT_ARTIFACT, prep.artifact_rows)
    if prep.texts:
        (top,) = db.execute("SELECT coalesce(max(id), 0) FROM text_segments").fetchone()
        db.executemany(f"INSERT INTO text_segments ({', '.join(TEXT_COLS)}) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", prep.texts)
        db.execute("INSERT INTO text_segments_fts (rowid, text) "
                   "SELECT id, text FROM text_segments WHERE id > ?", (top,))
    if prep.objects:
        db.executemany(f"INSERT INTO object_labels ({', '.join(OBJECT_COLS)}) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", prep.objects)
    if prep.scenes:
        db.executemany(f"INSERT INTO scene_ranges ({', '.join(SCENE_COLS)}) "
                       "VALUES (?, ?, ?, ?, ?, ?)", prep.scenes)
    db.executemany("UPDATE assets SET duration_ms = ?, fps = ?, variable_frame_rate = ?, "
                   "size_bytes = ? WHERE asset_id = ?",
                   [(d, f, v, s, a) for _i, a, d, f, v, s in prep.metadata])
    db.executemany(_UPSERT_SUMMARY, prep.summaries())
    return len(prep.ids)
