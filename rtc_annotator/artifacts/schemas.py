"""Versioned payload schemas and the registry every write path validates through.

A payload schema is a pydantic model registered under ``(artifact_type, schema_version)``.
:data:`registry` holds the built-in v1 schemas; :meth:`SchemaRegistry.validate` returns the
normalised payload as a plain dict or raises :class:`SchemaError` (code ``SCHEMA_ERROR``).
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rtc_annotator.errors import RtcAnnotatorError


class SchemaError(RtcAnnotatorError):
    """An artifact's type/version is unknown or its payload does not match the schema."""

    code = "SCHEMA_ERROR"
    default_hint = "produce payloads that match the registered schema for (type, version)"


class _Payload(BaseModel):
    # NaN and infinity have no JSON form (PostgreSQL's JSONB refuses them): reject them here
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("text", "language", "word", "label", "codec", "languages",
                     mode="after", check_fields=False)
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text and JSONB cannot hold NUL: refuse it at validation, not in the database
        if type(value) is str:  # the common case first: this runs for every text field
            if "\x00" in value:
                raise ValueError("must not contain NUL characters")
            return value
        items = value if isinstance(value, list) else (value,)
        if any(isinstance(item, str) and "\x00" in item for item in items):
            raise ValueError("must not contain NUL characters")
        return value


class _Span(_Payload):
    @model_validator(mode="after")
    def _ordered(self) -> _Span:
        start = getattr(self, "start_ms", None)
        end = getattr(self, "end_ms", None)
        if start is not None and end is not None and end < start:
            raise ValueError("end_ms must not be before start_ms")
        return self


class Word(_Payload):
    """One word of a transcript segment."""

    word: str = Field(description="The word as recognised, with its leading space if any.")
    start_ms: int = Field(ge=0, description="Start in ms from the media's presentation time.")
    end_ms: int = Field(ge=0, description="End in ms.")
    probability: float = Field(ge=0.0, le=1.0, description="Recogniser probability, 0..1.")


class TranscriptSegmentV1(_Span):
    """``transcript.segment`` v1: one recognised speech segment."""

    text: str = Field(description="Segment text.")
    language: str = Field(description="Language code, e.g. 'en'.")
    start_ms: int = Field(ge=0, description="Start in ms.")
    end_ms: int = Field(ge=0, description="End in ms.")
    confidence: float = Field(ge=0.0, le=1.0, description="Segment confidence, 0..1.")
    words: list[Word] = Field(default_factory=list, description="Word timings, may be empty.")


class SceneV1(_Span):
    """``scene`` v1: one shot between two cuts."""

    index: int = Field(ge=0, description="0-based scene number in the video.")
    start_ms: int = Field(ge=0, description="Start in ms.")
    end_ms: int = Field(ge=0, description="End in ms.")
    boundary_score: float | None = Field(default=None, description="Detector score of the cut.")


class Box(_Payload):
    """A box normalised to the frame: 0..1 on both axes, (x1, y1) top left."""

    x1: float = Field(ge=0.0, le=1.0, description="Left edge, 0..1.")
    y1: float = Field(ge=0.0, le=1.0, description="Top edge, 0..1.")
    x2: float = Field(ge=0.0, le=1.0, description="Right edge, 0..1.")
    y2: float = Field(ge=0.0, le=1.0, description="Bottom edge, 0..1.")

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if self.x2 < self.x1 or self.y2 < self.y1:
            raise ValueError("box needs x1 <= x2 and y1 <= y2")
        return self


class ObjectDetectionV1(_Payload):
    """``object.detection`` v1: one detected object in one frame."""

    label: str = Field(min_length=1, description="Class label, e.g. 'dog'.")
    confidence: float = Field(ge=0.0, le=1.0, description="Detector confidence, 0..1.")
    box: Box = Field(description="Normalised bounding box.")
    frame_pts_ms: int = Field(ge=0, description="Presentation time of the frame in ms.")
    track_id: int | None = Field(default=None, description="Tracker id, if tracked.")


class OcrTextV1(_Payload):
    """``ocr.text`` v1: one text region read in a frame."""

    text: str = Field(description="Recognised text.")
    confidence: float = Field(ge=0.0, le=1.0, description="Recogniser confidence, 0..1.")
    polygon: list[tuple[float, float]] = Field(
        description="Region outline as [x, y] pairs, normalised 0..1."
    )
    languages: list[str] = Field(default_factory=list, description="Languages tried.")

    @model_validator(mode="after")
    def _normalised(self) -> OcrTextV1:
        for x, y in self.polygon:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError("polygon points must be normalised to 0..1")
        return self


class VideoMetadataV1(_Payload):
    """``video.metadata`` v1: facts about the whole video."""

    duration_ms: int = Field(ge=0, description="Duration in ms.")
    fps: float = Field(ge=0.0, description="Average frame rate.")
    variable_frame_rate: bool = Field(description="True when frame durations vary.")
    codec: str = Field(description="Video codec name, e.g. 'h264'.")
    width: int = Field(ge=0, description="Width in pixels.")
    height: int = Field(ge=0, description="Height in pixels.")
    size_bytes: int = Field(ge=0, description="File size in bytes.")


class SchemaRegistry:
    """Maps ``(artifact_type, schema_version)`` to a payload model."""

    def __init__(self) -> None:
        self._schemas: dict[tuple[str, int], type[BaseModel]] = {}

    def register(self, artifact_type: str, schema_version: int, model: type[BaseModel]) -> None:
        key = (artifact_type, schema_version)
        if key in self._schemas and self._schemas[key] is not model:
            raise SchemaError(f"schema {artifact_type} v{schema_version} is already registered")
        self._schemas[key] = model

    def get(self, artifact_type: str, schema_version: int) -> type[BaseModel]:
        try:
            return self._schemas[(artifact_type, schema_version)]
        except KeyError:
            known = ", ".join(f"{t} v{v}" for t, v in sorted(self._schemas))
            raise SchemaError(
                f"unknown artifact schema {artifact_type!r} v{schema_version}",
                hint=f"known schemas: {known}",
            ) from None

    def known(self) -> list[tuple[str, int]]:
        return sorted(self._schemas)

    def validate(self, artifact_type: str, schema_version: int, payload: Any) -> dict[str, Any]:
        """Return ``payload`` normalised by its schema, or raise :class:`SchemaError`."""
        return self.validate_model(artifact_type, schema_version, payload).model_dump(mode="json")

    def validate_model(self, artifact_type: str, schema_version: int, payload: Any) -> BaseModel:
        """Return ``payload`` validated as its schema's model, or raise :class:`SchemaError`."""
        model = self.get(artifact_type, schema_version)
        if isinstance(payload, BaseModel):  # never trust an instance: it may be unvalidated
            payload = payload.model_dump()
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "payload"
            raise SchemaError(
                f"invalid {artifact_type} v{schema_version} payload: {where}: {first['msg']}"
                + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""),
            ) from None


registry = SchemaRegistry()
registry.register("transcript.segment", 1, TranscriptSegmentV1)
registry.register("scene", 1, SceneV1)
registry.register("object.detection", 1, ObjectDetectionV1)
registry.register("ocr.text", 1, OcrTextV1)
registry.register("video.metadata", 1, VideoMetadataV1)
