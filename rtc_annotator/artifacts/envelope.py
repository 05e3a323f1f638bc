"""The artifact envelope: one result of one pipeline run, with its provenance.

Envelopes travel as plain dicts (``env.model_dump(mode="json")`` /
``ArtifactEnvelope.model_validate(d)``). Constructing an envelope validates its payload through
:data:`rtc_annotator.artifacts.schemas.registry`, so an ``ArtifactEnvelope`` instance is always
valid; the store validates again on ingest.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rtc_annotator.artifacts.schemas import SchemaError, registry

SHA256_HEX = r"^[0-9a-f]{64}$"


class EnvelopeFields(BaseModel):
    """The envelope's fields without the payload check (see :func:`check_envelope`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    artifact_id: str = Field(
        min_length=1, max_length=64, pattern=r"^[!-~]+$",
        description="Deterministic id (printable ASCII, no spaces).",
    )
    asset_id: str = Field(pattern=SHA256_HEX, description="sha256 hex of the video bytes.")
    artifact_type: str = Field(min_length=1, max_length=64, description="e.g. 'scene'.")
    schema_version: int = Field(ge=1, description="Version of the payload schema.")
    span_start_ms: int = Field(ge=0, description="Start of the span the artifact covers, ms.")
    span_end_ms: int = Field(ge=0, description="End of the span, ms (>= start).")
    payload: Any = Field(description="Type-specific body, validated by its schema.")
    producer: str = Field(min_length=1, max_length=128, description="Pipeline that made it.")
    producer_version: str = Field(max_length=64, description="Version of the producer.")
    model_profile: str = Field(max_length=64, description="fast, balanced or high_quality.")
    config_hash: str = Field(max_length=128, description="Hash of the pipeline options.")
    input_hash: str = Field(max_length=128, description="Hash of the input the run read.")
    run_id: str = Field(min_length=1, max_length=64, description="The run that produced it.")
    created_at: datetime = Field(description="Creation time, UTC.")

    @field_validator("created_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v.astimezone(UTC)


class ArtifactEnvelope(EnvelopeFields):
    """One artifact with its provenance; the unit the store ingests."""

    payload: dict[str, Any] = Field(description="Type-specific body, validated by its schema.")

    @model_validator(mode="after")
    def _check(self) -> ArtifactEnvelope:
        if self.span_end_ms < self.span_start_ms:
            raise ValueError("span_end_ms must not be before span_start_ms")
        normalised = registry.validate(self.artifact_type, self.schema_version, self.payload)
        object.__setattr__(self, "payload", normalised)
        return self


def canonical_json(value: Any) -> str:
    """Stable JSON text: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def derive_artifact_id(
    asset_id: str, run_id: str, artifact_type: str, ordinal: int, payload: Any
) -> str:
    """sha256(asset, run, type, ordinal, canonical payload), hex, first 32 characters."""
    text = "\x00".join((asset_id, run_id, artifact_type, str(ordinal), canonical_json(payload)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def make_envelope(
    *,
    asset_id: str,
    artifact_type: str,
    schema_version: int,
    span_start_ms: int,
    span_end_ms: int,
    payload: dict[str, Any],
    producer: str,
    producer_version: str,
    model_profile: str,
    config_hash: str,
    input_hash: str,
    run_id: str,
    ordinal: int,
    created_at: datetime | None = None,
) -> ArtifactEnvelope:
    """Validate ``payload`` and build an envelope with a deterministic ``artifact_id``.

    The same (run, type, ordinal, payload) always gives the same id, so a replayed batch is
    recognised by the store's idempotent ingest. Raises :class:`SchemaError`.
    """
    normalised = registry.validate(artifact_type, schema_version, payload)
    try:
        return ArtifactEnvelope(
            artifact_id=derive_artifact_id(asset_id, run_id, artifact_type, ordinal, normalised),
            asset_id=asset_id,
            artifact_type=artifact_type,
            schema_version=schema_version,
            span_start_ms=span_start_ms,
            span_end_ms=span_end_ms,
            payload=normalised,
            producer=producer,
            producer_version=producer_version,
            model_profile=model_profile,
            config_hash=config_hash,
            input_hash=input_hash,
            run_id=run_id,
            created_at=created_at or datetime.now(UTC),
        )
    except ValidationError as exc:
        raise envelope_error(exc) from None


def envelope_error(exc: ValidationError, index: int | None = None) -> SchemaError:
    """Turn a pydantic error on an envelope into a one-line :class:`SchemaError`."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "envelope"
    prefix = f"envelope {index}: " if index is not None else ""
    return SchemaError(f"{prefix}invalid envelope: {where}: {first['msg']}")


def check_envelope(value: ArtifactEnvelope | dict[str, Any], index: int | None = None
                   ) -> tuple[EnvelopeFields, BaseModel]:
    """Validate an envelope (dict or instance) and its payload, without building an envelope.

    The same checks as :class:`ArtifactEnvelope` with the same errors, but the payload is
    returned as its schema's model instance (validated once, never dumped to a dict): the
    store's ingest serialises it straight to JSON and reads projection fields from it.
    """
    data = dict(value.__dict__) if isinstance(value, ArtifactEnvelope) else value
    prefix = f"envelope {index}: " if index is not None else ""
    try:
        head = EnvelopeFields.model_validate(data)
    except ValidationError as exc:
        raise envelope_error(exc, index) from None
    if head.span_end_ms < head.span_start_ms:
        raise SchemaError(f"{prefix}invalid envelope: span_end_ms must not be before "
                          "span_start_ms")
    if type(head.payload) is not dict:
        raise SchemaError(f"{prefix}invalid envelope: payload: Input should be a valid "
                          "dictionary")
    try:
        payload = registry.validate_model(head.artifact_type, head.schema_version, head.payload)
    except SchemaError as exc:
        raise SchemaError(f"{prefix}{exc.message}", hint=exc.hint) from None
    return head, payload


def coerce_envelope(value: ArtifactEnvelope | dict[str, Any], index: int | None = None) -> (
    ArtifactEnvelope
):
    """Validate a dict (or re-validate an instance) into an :class:`ArtifactEnvelope`."""
    data = value.model_dump() if isinstance(value, ArtifactEnvelope) else value
    try:
        return ArtifactEnvelope.model_validate(data)
    except ValidationError as exc:
        raise envelope_error(exc, index) from None
    except SchemaError as exc:
        if index is None:
            raise
        raise SchemaError(f"envelope {index}: {exc.message}", hint=exc.hint) from None
