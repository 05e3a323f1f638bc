"""SQLAlchemy tables of the store (one metadata for SQLite and PostgreSQL).

Parts that exist on one dialect only are created by the migration and not mapped here:
PostgreSQL's ``text_segments.tsv`` generated ``tsvector`` column with its GIN index and the GIN
index on ``artifacts.payload``; SQLite's ``text_segments_fts`` FTS5 table (filled by
``Store.ingest``) and its delete trigger.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)


class Base(DeclarativeBase):
    pass


class Asset(Base):
    """One video, identified by the sha256 of its bytes."""

    __tablename__ = "assets"
    asset_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    filename: Mapped[str] = mapped_column(sa.String(1024), default="")
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    fps: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    variable_frame_rate: Mapped[bool | None] = mapped_column(sa.Boolean, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Ts)


class Run(Base):
    """One pipeline execution on one asset."""

    __tablename__ = "runs"
    run_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    asset_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    pipeline: Mapped[str] = mapped_column(sa.String(64))
    model_profile: Mapped[str] = mapped_column(sa.String(64))
    worker: Mapped[str] = mapped_column(sa.String(256))
    config_hash: Mapped[str] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    started_at: Mapped[datetime] = mapped_column(Ts)
    finished_at: Mapped[datetime | None] = mapped_column(Ts, nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


class Artifact(Base):
    """The envelope table."""

    __tablename__ = "artifacts"
    artifact_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    asset_id: Mapped[str] = mapped_column(sa.String(64))
    artifact_type: Mapped[str] = mapped_column(sa.String(64))
    schema_version: Mapped[int] = mapped_column(sa.Integer)
    span_start_ms: Mapped[int] = mapped_column(sa.BigInteger)
    span_end_ms: Mapped[int] = mapped_column(sa.BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    producer: Mapped[str] = mapped_column(sa.String(128))
    producer_version: Mapped[str] = mapped_column(sa.String(64))
    model_profile: Mapped[str] = mapped_column(sa.String(64))
    config_hash: Mapped[str] = mapped_column(sa.String(128))
    input_hash: Mapped[str] = mapped_column(sa.String(128))
    run_id: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(Ts)

    __table_args__ = (
        sa.Index(
            "ix_artifacts_asset_type_run_span",
            "asset_id", "artifact_type", "run_id", "span_start_ms", "span_end_ms", "artifact_id",
        ),
    )


class ArtifactSelection(Base):
    """Which run's results count for one (asset, artifact type)."""

    __tablename__ = "artifact_selections"
    asset_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    artifact_type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    mode: Mapped[str] = mapped_column(sa.String(16))
    run_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    model_profile: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(Ts)


class RunSummary(Base):
    """Projection: per (asset, type, run) the count and the newest artifact time."""

    __tablename__ = "run_summaries"
    asset_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    artifact_type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    model_profile: Mapped[str] = mapped_column(sa.String(64))
    artifact_count: Mapped[int] = mapped_column(sa.BigInteger)
    last_created_at: Mapped[datetime] = mapped_column(Ts)


class TextSegment(Base):
    """Projection: searchable text of transcript segments and OCR regions."""

    __tablename__ = "text_segments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    artifact_id: Mapped[str] = mapped_column(sa.String(64))
    asset_id: Mapped[str] = mapped_column(sa.String(64))
    run_id: Mapped[str] = mapped_column(sa.String(64))
    source: Mapped[str] = mapped_column(sa.String(16))
    start_ms: Mapped[int] = mapped_column(sa.BigInteger)
    end_ms: Mapped[int] = mapped_column(sa.BigInteger)
    confidence: Mapped[float] = mapped_column(sa.Float)
    text: Mapped[str] = mapped_column(sa.Text)

    __table_args__ = (
        sa.Index("ix_text_segments_asset_run_start", "asset_id", "run_id", "start_ms"),
    )


class ObjectLabel(Base):
    """Projection: one row per object detection, keyed in jump order (label, start, end, id)."""

    __tablename__ = "object_labels"
    artifact_id: Mapped[str] = mapped_column(sa.String(64))
    asset_id: Mapped[str] = mapped_column(sa.String(64))
    run_id: Mapped[str] = mapped_column(sa.String(64))
    label: Mapped[str] = mapped_column(sa.String(128))
    confidence: Mapped[float] = mapped_column(sa.Float)
    start_ms: Mapped[int] = mapped_column(sa.BigInteger)
    end_ms: Mapped[int] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.PrimaryKeyConstraint("asset_id", "run_id", "label", "start_ms", "end_ms",
                                "artifact_id", name="pk_object_labels"),
        {"sqlite_with_rowid": False},
    )


class SceneRange(Base):
    """Projection: scene boundaries, keyed in jump order (start, end, id)."""

    __tablename__ = "scene_ranges"
    artifact_id: Mapped[str] = mapped_column(sa.String(64))
    asset_id: Mapped[str] = mapped_column(sa.String(64))
    run_id: Mapped[str] = mapped_column(sa.String(64))
    scene_index: Mapped[int] = mapped_column(sa.Integer)
    start_ms: Mapped[int] = mapped_column(sa.BigInteger)
    end_ms: Mapped[int] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.PrimaryKeyConstraint("asset_id", "run_id", "start_ms", "end_ms", "artifact_id",
                                name="pk_scene_ranges"),
        {"sqlite_with_rowid": False},
    )


metadata = Base.metadata
