"""Artifact envelopes, versioned payload schemas and the schema registry."""

from rtc_annotator.artifacts.envelope import (
    ArtifactEnvelope,
    coerce_envelope,
    derive_artifact_id,
    make_envelope,
)
from rtc_annotator.artifacts.schemas import SchemaError, SchemaRegistry, registry

__all__ = [
    "ArtifactEnvelope",
    "SchemaError",
    "SchemaRegistry",
    "coerce_envelope",
    "derive_artifact_id",
    "make_envelope",
    "registry",
]
