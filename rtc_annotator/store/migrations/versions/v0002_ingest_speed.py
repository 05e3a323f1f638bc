"""Faster ingest: fewer artifact indexes, set-based FTS5 population on SQLite.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02

- ``ix_artifacts_run`` and ``ix_artifacts_asset_type_profile_start`` go: every artifact query
  names the asset and (almost always) the type, so ``ix_artifacts_asset_type_run_span`` serves
  them; a profile filter is applied to the rows of that prefix. Each index with random keys cost
  a page write per row and batch.
- SQLite: the per-row ``text_segments_ai`` trigger goes; ``Store.ingest`` fills
  ``text_segments_fts`` with one ``INSERT ... SELECT`` over the new rows in the same
  transaction. The delete trigger stays.
- Projections lose their unique ``artifact_id`` indexes (the artifacts' primary key already
  makes ingest idempotent, and projections are written for new artifacts only):
  ``object_labels`` and ``scene_ranges`` are keyed by their query order instead
  (``WITHOUT ROWID`` on SQLite, so the table is the index), ``text_segments`` keeps its id.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _id(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(64), nullable=False)


def _rebuild(name: str, columns: list[sa.Column[Any]], key: list[str]) -> None:
    """Replace table ``name`` by one with primary key ``key`` (rows copied)."""
    op.create_table(f"{name}_new", *columns,
                    sa.PrimaryKeyConstraint(*key, name=f"pk_{name}"), sqlite_with_rowid=False)
    cols = ", ".join(c.name for c in columns)
    op.execute(f"INSERT INTO {name}_new ({cols}) SELECT {cols} FROM {name}")
    op.drop_table(name)
    op.rename_table(f"{name}_new", name)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_artifacts_run", table_name="artifacts")
    op.drop_index("ix_artifacts_asset_type_profile_start", table_name="artifacts")
    _rebuild("object_labels", [
        _id("artifact_id"), _id("asset_id"), _id("run_id"),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
    ], ["asset_id", "run_id", "label", "start_ms", "end_ms", "artifact_id"])
    _rebuild("scene_ranges", [
        _id("artifact_id"), _id("asset_id"), _id("run_id"),
        sa.Column("scene_index", sa.Integer, nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
    ], ["asset_id", "run_id", "start_ms", "end_ms", "artifact_id"])
    if pg:
        op.drop_constraint("text_segments_artifact_id_key", "text_segments", type_="unique")
        return
    # SQLite cannot drop a UNIQUE constraint: rebuild text_segments with the same ids, so the
    # external-content FTS5 table (which refers to it by name and rowid) stays valid
    op.execute("DROP TRIGGER IF EXISTS text_segments_ai")
    op.execute("DROP TRIGGER IF EXISTS text_segments_ad")
    op.create_table(
        "text_segments_new",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True, nullable=False),
        _id("artifact_id"), _id("asset_id"), _id("run_id"),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    cols = "id, artifact_id, asset_id, run_id, source, start_ms, end_ms, confidence, text"
    op.execute(f"INSERT INTO text_segments_new ({cols}) SELECT {cols} FROM text_segments")
    op.drop_table("text_segments")
    op.rename_table("text_segments_new", "text_segments")
    op.create_index(
        "ix_text_segments_asset_run_start", "text_segments", ["asset_id", "run_id", "start_ms"]
    )
    op.execute(
        "CREATE TRIGGER text_segments_ad AFTER DELETE ON text_segments BEGIN "
        "INSERT INTO text_segments_fts(text_segments_fts, rowid, text) "
        "VALUES ('delete', old.id, old.text); END"
    )


def downgrade() -> None:
    raise NotImplementedError(
        "revision 0002 has no downgrade: export the envelopes (JSONL) and re-ingest them"
    )
