"""Change gates on real models: model calls are spent only where the picture or sound changed,
and the results stay what they were (real easyocr, YOLO and whisper weights, through
`rtc-annotator annotate`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import tomli_w

from tests.lecture import check_spans, make_lecture
from tests.pipelines.test_real_models import annotate
from tests.real_models import make_people, make_speech, model_config, words_of

pytestmark = pytest.mark.timeout(600)

# 4 slides of 3 s sampled every second: the third differs from the second only in its page
# number, the fourth has a box moving across it (a region that changes on every sample)
SLIDES = (
    ("Gradient Descent", "minimize the loss step by step", ""),
    ("Stochastic Updates", "one minibatch at a time", ""),
    ("Stochastic Updates", "one minibatch at a time", ""),
    ("Summary", "descend carefully and check often", ""),
)


def test_ocr_gate_reads_only_what_changed_and_keeps_every_span(
        real: SimpleNamespace, tmp_path: Path) -> None:
    lecture = make_lecture(tmp_path, slide_s=3, speech=False, slides=SLIDES, moving=(3,))
    summary, proc, arts = annotate(real, lecture.video, ["ocr"],
                                   {"ocr": {"sample_every_ms": 1000}}, "gate-ocr")
    assert summary["status"] == "completed", proc.stderr[-2000:]

    found = [{"text": a["text"], "start_ms": a["start"], "end_ms": a["end"]}
             for a in arts["ocr.text"]]
    assert check_spans(lecture.texts, found, sample_ms=1000) == []
    gate = summary["stats"]["ocr"]["gate"]
    assert gate["frames"] == 12
    # read whole: the first sample and the two new slides; the page number and the moving box
    # are read as bands; the unchanged samples (1, 2, 4, 5, 7, 8) cost no model call
    assert gate["full_reads"] <= 4
    assert gate["band_reads"] >= 3  # the page number (6) and the box (10, 11)
    assert gate["calls_saved"] >= 5
    assert gate["frames"] == gate["full_reads"] + gate["band_reads"] + gate["calls_saved"]


def test_ocr_without_the_gate_reads_every_sample(real: SimpleNamespace, tmp_path: Path) -> None:
    lecture = make_lecture(tmp_path, slide_s=2, speech=False, slides=SLIDES[:2], moving=())
    summary, proc, arts = annotate(real, lecture.video, ["ocr"],
                                   {"ocr": {"sample_every_ms": 1000, "gate": False}},
                                   "gate-ocr-off")
    assert summary["status"] == "completed", proc.stderr[-2000:]
    assert "ocr" not in summary["stats"]
    found = [{"text": a["text"], "start_ms": a["start"], "end_ms": a["end"]}
             for a in arts["ocr.text"]]
    assert check_spans(lecture.texts, found, sample_ms=1000) == []


def test_objects_gate_on_a_still_picture_repeats_the_detections(
        real: SimpleNamespace, tmp_path: Path) -> None:
    """The people photos, each held still for 2 s: with the gate the model reads each photo
    once, and every sample still carries the same boxes as without it."""
    video = make_people(tmp_path, real.weights.photos)
    opts = {"model": "people", "sample_every_ms": 500}
    results: dict[bool, dict[int, list[tuple[Any, ...]]]] = {}
    stats: dict[bool, dict[str, Any]] = {}
    for gate in (False, True):
        summary, proc, arts = annotate(real, video, ["objects"],
                                       {"objects": {**opts, "gate": gate}}, f"gate-obj-{gate}")
        assert summary["status"] == "completed", proc.stderr[-2000:]
        by_frame: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        for a in arts["object.detection"]:
            b = a["box"]
            by_frame[a["frame_pts_ms"]].append(
                (a["label"], round(b["x1"], 2), round(b["y1"], 2), round(b["x2"], 2),
                 round(b["y2"], 2)))
        results[gate] = {t: sorted(v) for t, v in by_frame.items()}
        stats[gate] = summary["stats"].get("objects", {})
    assert results[True].keys() == results[False].keys() and len(results[True]) >= 8
    for t in results[False]:
        assert [d[0] for d in results[True][t]] == [d[0] for d in results[False][t]], t
        for a, b in zip(results[True][t], results[False][t], strict=True):
            assert all(abs(x - y) <= 0.03 for x, y in zip(a[1:], b[1:], strict=True)), (t, a, b)
    assert stats[False] == {}
    gate_stats = stats[True]["gate"]
    assert gate_stats["calls_saved"] >= gate_stats["frames"] // 2  # two photos, many samples


def test_transcript_batched_keeps_the_timestamps_contract(
        real: SimpleNamespace, tmp_path: Path) -> None:
    speech = make_speech(tmp_path)
    words: dict[bool, list[str]] = {}
    segments: dict[bool, list[dict[str, Any]]] = {}
    for batched in (False, True):
        summary, proc, arts = annotate(real, speech.path, ["transcript"],
                                       {"transcript": {"batched": batched}},
                                       f"batched-{batched}")
        assert summary["status"] == "completed", proc.stderr[-2000:]
        segments[batched] = sorted(arts["transcript.segment"], key=lambda a: a["start"])
        words[batched] = [w for a in segments[batched] for w in words_of(a["text"])]
    assert set(words[True]) >= set(words[False]) - {"the", "a", "to"}
    for seg in segments[True]:  # same contract: ms from the start, words inside their segment
        assert 0 <= seg["start"] <= seg["end"] <= speech.duration_ms + 500
        for w in seg["words"]:
            assert seg["start"] - 50 <= w["start_ms"] <= w["end_ms"] <= seg["end"] + 50


def test_misconfigured_gates_are_clear_errors(real: SimpleNamespace, tmp_path: Path) -> None:
    lecture = make_lecture(tmp_path, slide_s=1, speech=False, slides=SLIDES[:1], moving=())
    cfg = tmp_path / "c.toml"
    cfg.write_text(tomli_w.dumps(model_config(real.models_dir, real.cache, tmp_path / "d.db")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    for options, where in (({"ocr": {"gate_threshold": 0}}, "gate_threshold"),
                           ({"ocr": {"gate_threshold": 300}}, "gate_threshold"),
                           ({"objects": {"gate": "sometimes"}}, "gate"),
                           ({"transcript": {"batched": True, "vad_filter": False}},
                            "vad_filter")):
        pipeline = next(iter(options))
        proc = subprocess.run(
            [sys.executable, "-m", "rtc_annotator", "annotate", str(lecture.video), "-p",
             pipeline, "--options", json.dumps(options), "--config", str(cfg), "--json"],
            capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode != 0
        said = proc.stderr + proc.stdout
        assert "OPTIONS_ERROR" in said and where in said and pipeline in said, said[-800:]
