"""Initial store schema: assets, runs, artifacts, selections and projections.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Ts = sa.DateTime(timezone=True)


def _id(name: str, primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(64), primary_key=primary_key, nullable=False)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "assets",
        _id("asset_id", True),
        sa.Column("filename", sa.String(1024), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=True),
        sa.Column("duration_ms", sa.BigInteger, nullable=True),
        sa.Column("fps", sa.Float, nullable=True),
        sa.Column("variable_frame_rate", sa.Boolean, nullable=True),
        sa.Column("created_at", Ts, nullable=False),
    )
    op.create_table(
        "runs",
        _id("run_id", True),
        _id("asset_id"),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("model_profile", sa.String(64), nullable=False),
        sa.Column("worker", sa.String(256), nullable=False),
        sa.Column("config_hash", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", Ts, nullable=False),
        sa.Column("finished_at", Ts, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_runs_asset_id", "runs", ["asset_id"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "artifacts",
        _id("artifact_id", True),
        _id("asset_id"),
        sa.Column("artifact_type", sa.String(64), nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("span_start_ms", sa.BigInteger, nullable=False),
        sa.Column("span_end_ms", sa.BigInteger, nullable=False),
        sa.Column("payload", JSONB() if pg else sa.JSON(), nullable=False),
        sa.Column("producer", sa.String(128), nullable=False),
        sa.Column("producer_version", sa.String(64), nullable=False),
        sa.Column("model_profile", sa.String(64), nullable=False),
        sa.Column("config_hash", sa.String(128), nullable=False),
        sa.Column("input_hash", sa.String(128), nullable=False),
        _id("run_id"),
        sa.Column("created_at", Ts, nullable=False),
    )
    op.create_index(
        "ix_artifacts_asset_type_run_span", "artifacts",
        ["asset_id", "artifact_type", "run_id", "span_start_ms", "span_end_ms", "artifact_id"],
    )
    op.create_index(
        "ix_artifacts_asset_type_profile_start", "artifacts",
        ["asset_id", "artifact_type", "model_profile", "span_start_ms"],
    )
    op.create_index("ix_artifacts_run", "artifacts", ["run_id"])
    if pg:
        op.execute(
            "CREATE INDEX ix_artifacts_payload_gin ON artifacts USING gin (payload jsonb_path_ops)"
        )
    op.create_table(
        "artifact_selections",
        _id("asset_id", True),
        sa.Column("artifact_type", sa.String(64), primary_key=True, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("model_profile", sa.String(64), nullable=True),
        sa.Column("updated_at", Ts, nullable=False),
    )
    op.create_table(
        "run_summaries",
        _id("asset_id", True),
        sa.Column("artifact_type", sa.String(64), primary_key=True, nullable=False),
        _id("run_id", True),
        sa.Column("model_profile", sa.String(64), nullable=False),
        sa.Column("artifact_count", sa.BigInteger, nullable=False),
        sa.Column("last_created_at", Ts, nullable=False),
    )
    op.create_table(
        "text_segments",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True, autoincrement=True, nullable=False,
        ),
        sa.Column("artifact_id", sa.String(64), nullable=False, unique=True),
        _id("asset_id"),
        _id("run_id"),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_text_segments_asset_run_start", "text_segments", ["asset_id", "run_id", "start_ms"]
    )
    if pg:
        op.execute(
            "ALTER TABLE text_segments ADD COLUMN tsv tsvector "
            "GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED"
        )
        op.execute("CREATE INDEX ix_text_segments_tsv ON text_segments USING gin (tsv)")
    else:
        op.execute(
            "CREATE VIRTUAL TABLE text_segments_fts USING fts5("
            "text, content='text_segments', content_rowid='id', tokenize='unicode61')"
        )
        op.execute(
            "CREATE TRIGGER text_segments_ai AFTER INSERT ON text_segments BEGIN "
            "INSERT INTO text_segments_fts(rowid, text) VALUES (new.id, new.text); END"
        )
        op.execute(
            "CREATE TRIGGER text_segments_ad AFTER DELETE ON text_segments BEGIN "
            "INSERT INTO text_segments_fts(text_segments_fts, rowid, text) "
            "VALUES ('delete', old.id, old.text); END"
        )
    op.create_table(
        "object_labels",
        _id("artifact_id", True),
        _id("asset_id"),
        _id("run_id"),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_object_labels_asset_run_label_start", "object_labels",
        ["asset_id", "run_id", "label", "start_ms"],
    )
    op.create_table(
        "scene_ranges",
        _id("artifact_id", True),
        _id("asset_id"),
        _id("run_id"),
        sa.Column("scene_index", sa.Integer, nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_scene_ranges_asset_run_start", "scene_ranges",
                    ["asset_id", "run_id", "start_ms"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TRIGGER IF EXISTS text_segments_ai")
        op.execute("DROP TRIGGER IF EXISTS text_segments_ad")
        op.execute("DROP TABLE IF EXISTS text_segments_fts")
    for table in ("scene_ranges", "object_labels", "text_segments", "run_summaries",
                  "artifact_selections", "artifacts", "runs", "assets"):
        op.drop_table(table)
