"""objects: options, and conversion from ultralytics' real Results (real weights run in
test_real_models.py)."""

from __future__ import annotations

import pytest

from rtc_annotator.pipelines.base import OptionsError
from rtc_annotator.pipelines.objects import ObjectsPipeline, result_payloads
from tests.real_models import need_modules


def test_model_option_must_be_a_plain_name() -> None:
    pipeline = ObjectsPipeline()
    for bad in ("../../etc/passwd.pt", "/abs/yolo.pt", "a b", ""):
        with pytest.raises(OptionsError) as err:
            pipeline.parse_options({"model": bad})
        assert "model" in err.value.message
    opts = pipeline.parse_options({"model": "yolo11n.pt", "track": True})
    assert opts.track and opts.model == "yolo11n.pt"  # type: ignore[attr-defined]


def test_results_to_payloads() -> None:
    need_modules("ultralytics", "torch")
    import numpy as np
    import torch
    from ultralytics.engine.results import Results

    img = np.zeros((100, 200, 3), dtype=np.uint8)
    boxes = torch.tensor([[20.0, 10.0, 120.0, 60.0, 0.9, 1.0], [0.0, 0.0, 200.0, 100.0, 0.4, 0.0]])
    res = Results(img, path="x", names={0: "person", 1: "dog"}, boxes=boxes)
    out = result_payloads(res, 1234)
    # float32 tensors: compare with a tolerance, not exactly
    assert out[0] == {"label": "dog", "confidence": pytest.approx(0.9),
                      "box": pytest.approx({"x1": 0.1, "y1": 0.1, "x2": 0.6, "y2": 0.6}),
                      "frame_pts_ms": 1234, "track_id": None}
    assert out[1]["label"] == "person"
