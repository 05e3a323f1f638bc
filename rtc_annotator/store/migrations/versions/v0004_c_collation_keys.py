"""PostgreSQL: identifier columns compare bytes (``COLLATE "C"``), as SQLite does.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

The ids, types, run ids, sources and labels that the store's keys and indexes are built from
took the database's default collation (``en_US.UTF-8``, ``C.UTF-8``, ... whatever ``initdb``
was given). Two consequences:

- Order: ties in jump and listing order are broken by ``artifact_id``. Under a linguistic
  collation ``"a-b"`` and ``"ab"`` (both valid ids) sort differently from SQLite's byte order,
  so the same data could step through simultaneous artifacts in another order on the two
  stores. With ``"C"`` both order by bytes.
- Cost: every comparison of such a key in a B-tree went through ``strcoll``; with ``"C"`` it
  is a ``memcmp``. Ingest compares them on every index insert (the artifacts' composite index
  repeats asset, type and run in each entry).

Only the collation changes (the types stay), so PostgreSQL keeps the tables and rebuilds the
indexes that use these columns: on a large store this takes a while and holds an exclusive
lock, like any index rebuild. SQLite has nothing to change.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# table -> (column, varchar length)
KEY_COLUMNS: dict[str, tuple[tuple[str, int], ...]] = {
    "assets": (("asset_id", 64),),
    "runs": (("run_id", 64), ("asset_id", 64), ("status", 16)),
    "artifacts": (("artifact_id", 64), ("asset_id", 64), ("artifact_type", 64), ("run_id", 64)),
    "artifact_selections": (("asset_id", 64), ("artifact_type", 64), ("run_id", 64)),
    "run_summaries": (("asset_id", 64), ("artifact_type", 64), ("run_id", 64)),
    "text_segments": (("artifact_id", 64), ("asset_id", 64), ("run_id", 64), ("source", 16)),
    "object_labels": (("artifact_id", 64), ("asset_id", 64), ("run_id", 64), ("label", 128)),
    "scene_ranges": (("artifact_id", 64), ("asset_id", 64), ("run_id", 64)),
}


def _alter(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in KEY_COLUMNS.items():
        changes = ", ".join(
            f"ALTER COLUMN {name} TYPE varchar({length}) COLLATE {collation}"
            for name, length in columns
        )
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _alter('"C"')


def downgrade() -> None:
    _alter('"default"')
