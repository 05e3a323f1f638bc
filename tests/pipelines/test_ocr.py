"""ocr: easyocr output conversion and merging identical text over consecutive samples (real
inference: test_real_models.py)."""

from __future__ import annotations

import numpy as np
import pytest

from rtc_annotator.pipelines.ocr import TextItem, TextSpanMerger, readtext_items


def _item(text: str, conf: float = 0.9) -> TextItem:
    return TextItem(text, conf, [[0.1, 0.1], [0.5, 0.1], [0.5, 0.2], [0.1, 0.2]])


def test_readtext_output_converts_to_normalised_polygons() -> None:
    # easyocr.readtext(detail=1) returns [(box, text, confidence)], box = 4 [x, y] int corners
    results = [([[np.int32(20), np.int32(10)], [np.int32(120), np.int32(10)],
                 [np.int32(120), np.int32(30)], [np.int32(20), np.int32(30)]],
                "  Hello   slide ", np.float64(0.87)),
               ([[0, 0], [1, 0], [1, 1], [0, 1]], "   ", 0.99)]
    (item,) = readtext_items(results, 200, 100)
    assert item.text == "Hello slide" and item.confidence == pytest.approx(0.87)
    assert item.polygon == [[0.1, 0.1], [0.6, 0.1], [0.6, 0.3], [0.1, 0.3]]


def test_identical_text_on_consecutive_samples_is_one_span() -> None:
    merger = TextSpanMerger(["en"])
    assert merger.sample(0, [_item("Title"), _item("Page 1")]) == []
    assert merger.sample(1000, [_item("Title", 0.95), _item("Page 1")]) == []
    closed = merger.sample(2000, [_item("Title"), _item("Page 2")])
    assert [(o.payload["text"], o.span_start_ms, o.span_end_ms) for o in closed] == [
        ("Page 1", 0, 2000)]
    gap = merger.sample(3000, [_item("Page 2")])
    assert [(o.payload["text"], o.span_start_ms, o.span_end_ms) for o in gap] == [
        ("Title", 0, 3000)]
    assert gap[0].payload["confidence"] == 0.95
    again = merger.sample(4000, [_item("Title")])  # Title again after a gap: a new span
    assert [(o.payload["text"], o.span_start_ms, o.span_end_ms) for o in again] == [
        ("Page 2", 2000, 4000)]
    rest = merger.finish(4500)
    assert [(o.payload["text"], o.span_start_ms, o.span_end_ms) for o in rest] == [
        ("Title", 4000, 4500)]
    assert set(rest[0].payload) == {"text", "confidence", "polygon", "languages"}
