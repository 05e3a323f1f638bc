"""Versioned payload schemas and the registry every write path validates through.

A payload schema is a pydantic model registered under ``(artifact_type, schema_version)``.
:data:`registry` holds the built-in v1 schemas; :meth:`SchemaRegistry.validate` returns the
normalised payload as a plain dict or raises :class:`SchemaError` (code ``SCHEMA_ERROR``).

Other packages add schemas through the ``rtc_annotator.schemas`` entry-point group: each entry
points at a :class:`PluginPayload` subclass that names its ``artifact_type`` and
``schema_version``. They are loaded the first time a type is not found among the built-ins (or
:meth:`SchemaRegistry.known` is asked), in every process that validates: worker, job child,
client store, API.
"""

from __future__ import annotations

import importlib
import re
import threading
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rtc_annotator import plugins
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.logs import get_logger

log = get_logger(__name__)


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


def _find_nul(value: Any, where: str) -> str | None:
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find_nul(key, where) or _find_nul(item, f"{where}.{key}")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _find_nul(item, f"{where}.{i}")
            if found:
                return found
    return None


class PluginPayload(_Span):
    """Base of a plugin's payload schema (entry-point group ``rtc_annotator.schemas``).

    Subclasses set ``artifact_type`` (lower-case, dotted, e.g. ``frame.brightness``) and
    ``schema_version`` and declare their fields as pydantic fields. Inherited rules keep every
    payload storable in SQLite and PostgreSQL alike: unknown keys are refused, NaN and infinity
    are refused, no text anywhere may hold a NUL character, and fields named ``start_ms`` /
    ``end_ms`` must be ordered.
    """

    artifact_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    @model_validator(mode="before")
    @classmethod
    def _no_nul_anywhere(cls, data: Any) -> Any:
        where = _find_nul(data, "payload")
        if where:
            raise ValueError(f"{where} must not contain NUL characters")
        return data


_ARTIFACT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


class SchemaRegistry:
    """Maps ``(artifact_type, schema_version)`` to a payload model."""

    def __init__(self) -> None:
        self._schemas: dict[tuple[str, int], type[BaseModel]] = {}
        self._origins: dict[tuple[str, int], str] = {}
        self._broken: dict[str, str] = {}
        self._plugins_loaded = False
        self._lock = threading.Lock()

    def load_plugins(self, *, again: bool = False) -> None:
        """Register the schemas of installed plugins (once; ``again`` rescans entry points).

        A plugin schema that does not import or is not a :class:`PluginPayload` is skipped with
        a warning and remembered, so a lookup that misses can say which package to fix.
        """
        with self._lock:
            if self._plugins_loaded and not again:
                return
            if again:
                plugins.refresh()
                self._broken.clear()
            for entry in plugins.plugin_entries(plugins.SCHEMAS_GROUP):
                try:
                    model = _import_target(entry.target)
                    key = _plugin_key(model, entry)
                except Exception as exc:
                    reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
                    self._broken[entry.name] = (
                        f"schema plugin {entry.name!r} of {entry.origin} ({entry.target}) "
                        f"cannot be used: {reason}")
                    log.warning("schema plugin skipped", ctx={
                        "entry": entry.name, "distribution": entry.origin, "error": reason})
                    continue
                known = self._schemas.get(key)
                if known is model:
                    continue
                if known is not None:
                    owner = self._origins.get(key, "rtc-annotator")
                    self._broken[entry.name] = (
                        f"schema plugin {entry.name!r} of {entry.origin} declares {key[0]} "
                        f"v{key[1]}, which {owner} already registers")
                    log.warning("schema plugin skipped: type taken", ctx={
                        "entry": entry.name, "distribution": entry.origin, "type": key[0]})
                    continue
                self._schemas[key] = model
                self._origins[key] = entry.origin
            self._plugins_loaded = True

    def origin(self, artifact_type: str, schema_version: int) -> str | None:
        """The plugin distribution that registered a schema (None for built-ins)."""
        return self._origins.get((artifact_type, schema_version))

    def register(self, artifact_type: str, schema_version: int, model: type[BaseModel]) -> None:
        key = (artifact_type, schema_version)
        if key in self._schemas and self._schemas[key] is not model:
            raise SchemaError(f"schema {artifact_type} v{schema_version} is already registered")
        self._schemas[key] = model

    def get(self, artifact_type: str, schema_version: int) -> type[BaseModel]:
        model = self._schemas.get((artifact_type, schema_version))
        if model is not None:
            return model
        if not self._plugins_loaded:
            self.load_plugins()
            return self.get(artifact_type, schema_version)
        known = ", ".join(f"{t} v{v}" for t, v in sorted(self._schemas))
        broken = "; ".join(self._broken.values())
        hint = (f"{broken}; fix that package" if broken else
                f"known schemas: {known}; a plugin's artifact types need the plugin's package "
                "installed here too (pip install it on every machine that stores its results)")
        raise SchemaError(f"unknown artifact schema {artifact_type!r} v{schema_version}",
                          hint=hint)

    def known(self) -> list[tuple[str, int]]:
        self.load_plugins()
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


def _import_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def _plugin_key(model: Any, entry: plugins.PluginEntry) -> tuple[str, int]:
    if not (isinstance(model, type) and issubclass(model, PluginPayload)):
        raise TypeError(f"{entry.target} is not a subclass of "
                        "rtc_annotator.artifacts.schemas.PluginPayload")
    atype = getattr(model, "artifact_type", None)
    version = getattr(model, "schema_version", None)
    if not isinstance(atype, str) or not _ARTIFACT_TYPE.match(atype) or len(atype) > 64:
        raise TypeError(f"{entry.target}.artifact_type must be a lower-case dotted name like "
                        f"'frame.brightness' (got {atype!r})")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TypeError(f"{entry.target}.schema_version must be an int >= 1 (got {version!r})")
    return atype, version


registry = SchemaRegistry()
registry.register("transcript.segment", 1, TranscriptSegmentV1)
registry.register("scene", 1, SceneV1)
registry.register("object.detection", 1, ObjectDetectionV1)
registry.register("ocr.text", 1, OcrTextV1)
registry.register("video.metadata", 1, VideoMetadataV1)
