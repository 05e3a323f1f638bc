"""NUL characters cannot be stored by PostgreSQL: they are refused at validation, with the
field named, before any database sees them (same behaviour on SQLite)."""

from __future__ import annotations

import pytest

from rtc_annotator.artifacts import SchemaError, coerce_envelope, registry
from tests.store.conftest import env, new_asset


@pytest.mark.parametrize(
    ("atype", "payload", "field"),
    [
        ("transcript.segment", {"text": "a\x00b", "language": "en", "start_ms": 0, "end_ms": 10,
                                "confidence": 0.5, "words": []}, "text"),
        ("transcript.segment", {"text": "ab", "language": "en", "start_ms": 0, "end_ms": 10,
                                "confidence": 0.5, "words": [{"word": "\x00", "start_ms": 0,
                                                              "end_ms": 5, "probability": 1.0}]},
         "words.0.word"),
        ("object.detection", {"label": "dog\x00", "confidence": 0.9, "frame_pts_ms": 0,
                              "track_id": None,
                              "box": {"x1": 0.1, "y1": 0.1, "x2": 0.2, "y2": 0.2}}, "label"),
        ("ocr.text", {"text": "ok", "confidence": 0.9, "polygon": [[0, 0], [1, 0], [1, 1]],
                      "languages": ["en\x00"]}, "languages"),
    ],
)
def test_nul_in_payload_text_is_a_schema_error(atype: str, payload: dict[str, object],
                                               field: str) -> None:
    with pytest.raises(SchemaError) as info:
        registry.validate(atype, 1, payload)
    assert field in info.value.message and "NUL" in info.value.message


def test_artifact_id_must_be_printable_ascii() -> None:
    good = env(new_asset(), "scene", 0).model_dump(mode="json")
    assert coerce_envelope(good, 0).artifact_id == good["artifact_id"]
    for bad in ("a\x00b", "with space", "ünïcode", ""):
        with pytest.raises(SchemaError):
            coerce_envelope({**good, "artifact_id": bad}, 0)
