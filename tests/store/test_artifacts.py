"""Envelope and schema registry behaviour (no database)."""

from __future__ import annotations

import pytest

from rtc_annotator.artifacts import ArtifactEnvelope, SchemaError, coerce_envelope, registry
from tests.store.conftest import PAYLOADS, env, new_asset


def test_every_builtin_type_round_trips_as_dict() -> None:
    asset = new_asset()
    for i, atype in enumerate(PAYLOADS):
        e = env(asset, atype, 10, 20, ordinal=i)
        d = e.model_dump(mode="json")
        assert ArtifactEnvelope.model_validate(d) == e
        assert d["created_at"].endswith("Z")


def test_artifact_id_is_deterministic_and_depends_on_content() -> None:
    asset = new_asset()
    a = env(asset, "scene", 0, 10, index=1)
    b = env(asset, "scene", 0, 10, index=1)
    assert a.artifact_id == b.artifact_id and len(a.artifact_id) == 32
    assert env(asset, "scene", 0, 10, index=2).artifact_id != a.artifact_id
    assert env(asset, "scene", 0, 10, index=1, ordinal=1).artifact_id != a.artifact_id
    assert env(asset, "scene", 0, 10, index=1, run_id="other").artifact_id != a.artifact_id


@pytest.mark.parametrize(
    ("atype", "version", "payload", "fragment"),
    [
        ("scene", 2, {}, "unknown artifact schema"),
        ("face.unknown", 1, {}, "unknown artifact schema"),
        ("scene", 1, {"index": -1, "start_ms": 0, "end_ms": 1}, "index"),
        ("scene", 1, {"index": 0, "start_ms": 5, "end_ms": 1}, "end_ms"),
        ("object.detection", 1, {"label": "dog", "confidence": 0.5, "frame_pts_ms": 0,
                                 "box": {"x1": 0, "y1": 0, "x2": 1.5, "y2": 1}}, "box.x2"),
        ("object.detection", 1, {"label": "dog", "confidence": 1.5, "frame_pts_ms": 0,
                                 "box": {"x1": 0, "y1": 0, "x2": 1, "y2": 1}}, "confidence"),
        ("ocr.text", 1, {"text": "a", "confidence": 0.5, "polygon": [[2, 0]]}, "normalised"),
        ("transcript.segment", 1, {"text": "a", "language": "en", "start_ms": 0, "end_ms": 1,
                                   "confidence": 0.5, "extra": 1}, "extra"),
        ("video.metadata", 1, {"duration_ms": 1}, "fps"),
    ],
)
def test_registry_rejects_with_schema_error(atype: str, version: int, payload: dict[str, object],
                                            fragment: str) -> None:
    with pytest.raises(SchemaError) as info:
        registry.validate(atype, version, payload)
    assert info.value.code == "SCHEMA_ERROR"
    assert fragment in info.value.message
    assert info.value.hint


def test_envelope_dict_with_bad_fields_is_a_schema_error() -> None:
    good = env(new_asset(), "scene", 0, 10).model_dump(mode="json")
    for change in ({"asset_id": "not-a-hash"}, {"span_end_ms": -1}, {"schema_version": 0},
                   {"payload": {"index": "x"}}, {"unexpected": 1}):
        with pytest.raises(SchemaError) as info:
            coerce_envelope({**good, **change}, 4)
        assert info.value.message.startswith("envelope 4:")
