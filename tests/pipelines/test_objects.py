"""objects: options, and conversion from ultralytics' real Results where ultralytics imports."""

from __future__ import annotations

import pytest

from rtc_annotator.pipelines.base import OptionsError
from rtc_annotator.pipelines.objects import ObjectsPipeline, result_payloads


def test_model_option_must_be_a_plain_name() -> None:
    pipeline = ObjectsPipeline()
    for bad in ("../../etc/passwd.pt", "/abs/yolo.pt", "yolo.py"):
        with pytest.raises(OptionsError):
            pipeline.parse_options({"model": bad})
    assert pipeline.parse_options({"model": "yolo11n.yaml", "track": True}).track  # type: ignore[attr-defined]


def _ultralytics():
    try:
        import ultralytics  # noqa: F401
    except Exception as exc:
        pytest.skip(f"ultralytics cannot import on this machine ({type(exc).__name__}: {exc}); "
                    "no CPU torchvision build exists here")


def test_results_to_payloads() -> None:
    _ultralytics()
    import numpy as np
    import torch
    from ultralytics.engine.results import Results

    img = np.zeros((100, 200, 3), dtype=np.uint8)
    boxes = torch.tensor([[20.0, 10.0, 120.0, 60.0, 0.9, 1.0], [0.0, 0.0, 200.0, 100.0, 0.4, 0.0]])
    res = Results(img, path="x", names={0: "person", 1: "dog"}, boxes=boxes)
    out = result_payloads(res, 1234)
    assert out[0] == {"label": "dog", "confidence": pytest.approx(0.9),
                      "box": {"x1": 0.1, "y1": 0.1, "x2": 0.6, "y2": 0.6},
                      "frame_pts_ms": 1234, "track_id": None}
    assert out[1]["label"] == "person"


def test_yolo_from_yaml_runs(make_video) -> None:
    _ultralytics()
    from rtc_annotator.pipelines.base import RunContext

    video = make_video(colors=("red", "blue"), seconds_each=1.0)
    pipeline = ObjectsPipeline()
    opts = pipeline.parse_options({"model": "yolo11n.yaml", "sample_every_ms": 500, "batch": 2})
    outs = list(pipeline.run(video, opts, RunContext("j")))
    assert all(o.artifact_type == "object.detection" for o in outs)
