"""Real inference on real weights, through `rtc-annotator annotate` as a user runs it.

Each model pipeline runs on a generated input whose truth is known (see tests/real_models.py);
``--json`` output must parse (no library prints into it); the read-only models dir is unchanged
afterwards (ultralytics settings and easyocr's user_network go to the cache dir).

Timing tolerance of the transcript: 0.6 s, half the 1.2 s pause between sentences, so a segment
that merged two sentences or drifted into its neighbour fails. Measured with tiny.en on these
clips: segment edges off by at most 0.45 s (whisper's 20 ms timestamp tokens, word alignment
from cross-attention, VAD padding, and espeak's soft onsets all add to it).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import tomli_w

from tests.real_models import (
    SLIDE_S,
    SLIDES,
    Speech,
    make_people,
    make_slides,
    make_speech,
    model_config,
    people_points,
    tree_snapshot,
    words_of,
)

pytestmark = pytest.mark.timeout(600)
TOLERANCE_MS = 600
# words tiny.en hears in espeak's voice (it hears "quick round fox" and "Radiant descent")
KEYWORDS = (("fox", "lazy", "dog"), ("open", "window", "meeting"),
            ("descent", "minimum", "function"))


def annotate(real: SimpleNamespace, video: Path, pipelines: list[str],
             options: dict[str, Any], name: str, *, models_dir: Path | None = None,
             extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], subprocess.CompletedProcess[str], dict[str, list[dict[str, Any]]]]:
    """Run annotate --json in a subprocess; return the summary, the process, artifacts by type."""
    db = real.root / f"{name}.sqlite3"
    cfg = model_config(models_dir or real.models_dir, real.cache, db)
    cfg.update(extra or {})
    path = real.root / f"{name}.toml"
    path.write_text(tomli_w.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    env.update(YOLO_OFFLINE="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "rtc_annotator", "annotate", str(video), "-p", ",".join(pipelines),
         "--profile", "fast", "--options", json.dumps(options), "--config", str(path), "--json"],
        capture_output=True, text=True, timeout=540, env=env)
    summary = json.loads(proc.stdout)  # valid JSON: nothing else reached stdout
    arts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with sqlite3.connect(db) as conn:
        for kind, start, end, payload in conn.execute(
                "select artifact_type, span_start_ms, span_end_ms, payload from artifacts"):
            arts[kind].append({"start": start, "end": end, **json.loads(payload)})
    return summary, proc, arts


def run_status(real: SimpleNamespace, name: str) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(real.root / f"{name}.sqlite3") as conn:
        return {p: (s, e) for p, s, e in conn.execute("select pipeline, status, error from runs")}


def test_transcript_hears_the_sentences(real: SimpleNamespace, tmp_path: Path) -> None:
    speech: Speech = make_speech(tmp_path)
    before = tree_snapshot(real.models_dir)
    summary, proc, arts = annotate(real, speech.path, ["transcript"], {}, "transcript")
    assert summary["status"] == "completed", proc.stderr[-2000:]
    segments = sorted(arts["transcript.segment"], key=lambda a: a["start_ms"])
    assert len(segments) == len(speech.spans_ms), segments
    for seg, (start, end), keywords in zip(segments, speech.spans_ms, KEYWORDS, strict=True):
        assert seg["language"] == "en"
        assert abs(seg["start_ms"] - start) <= TOLERANCE_MS, (seg["text"], seg["start_ms"], start)
        assert abs(seg["end_ms"] - end) <= TOLERANCE_MS, (seg["text"], seg["end_ms"], end)
        words = {w: item for item in seg["words"] for w in words_of(item["word"])}
        for key in keywords:
            assert key in words, (key, seg["text"])
            w = words[key]
            assert start - TOLERANCE_MS <= w["start_ms"] <= w["end_ms"] <= end + TOLERANCE_MS
    assert tree_snapshot(real.models_dir) == before


def test_ocr_reads_the_slides(real: SimpleNamespace, tmp_path: Path) -> None:
    video = make_slides(tmp_path)
    before = tree_snapshot(real.models_dir)
    interval = SLIDE_S * 1000
    summary, proc, arts = annotate(real, video, ["ocr"], {"ocr": {"sample_every_ms": interval}},
                                   "ocr")
    assert summary["status"] == "completed", proc.stderr[-2000:]
    found = arts["ocr.text"]
    for i, text in enumerate(SLIDES):
        hits = [a for a in found if set(words_of(text)) & set(words_of(a["text"]))]
        assert hits, (text, [a["text"] for a in found])
        for a in hits:  # each span within one sample interval of the slide's true span
            assert abs(a["start"] - i * interval) <= interval
            assert abs(a["end"] - (i + 1) * interval) <= interval
        assert set(words_of(text)) <= {w for a in hits for w in words_of(a["text"])}
    assert tree_snapshot(real.models_dir) == before
    assert (real.cache / "model-libs" / "easyocr" / "user_network").is_dir()


def _holds(box: dict[str, float], point: tuple[float, float]) -> bool:
    x, y = point
    return box["x1"] <= x <= box["x2"] and box["y1"] <= y <= box["y2"]


def test_objects_finds_the_people(real: SimpleNamespace, tmp_path: Path) -> None:
    video = make_people(tmp_path, real.weights.photos)
    before = tree_snapshot(real.models_dir)
    summary, proc, arts = annotate(
        real, video, ["objects"], {"objects": {"model": "people", "sample_every_ms": 1000}},
        "objects")
    assert summary["status"] == "completed", proc.stderr[-2000:]
    by_frame: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in arts["object.detection"]:
        assert a["label"] in ("Normal", "Fall")  # the checkpoint's classes: both are people
        by_frame[a["frame_pts_ms"]].append(a)
    assert sorted(by_frame) == [0, 1000, 2000, 3000]
    for t, dets in by_frame.items():
        for point in people_points(t):  # a box holds each person, and no box is the frame
            holding = [d for d in dets if _holds(d["box"], point)]
            assert holding, (t, point, [d["box"] for d in dets])
        for d in dets:
            b = d["box"]
            assert (b["x2"] - b["x1"]) * (b["y2"] - b["y1"]) < 0.9
    assert tree_snapshot(real.models_dir) == before
    assert (real.cache / "model-libs" / "ultralytics").is_dir()


def test_broken_weights_fail_their_pipeline_only(real: SimpleNamespace, tmp_path: Path,
                                                 make_video) -> None:
    """A truncated whisper model.bin and a truncated YOLO file: each pipeline fails with an
    error naming the pipeline, the file and the fix; metadata and scenes keep their results."""
    broken = tmp_path / "broken"
    whisper = broken / "whisper"
    whisper.mkdir(parents=True)
    for f in real.weights.whisper.iterdir():
        data = f.read_bytes()
        (whisper / f.name).write_bytes(data[: 1 << 20] if f.name == "model.bin" else data)
    yolo = broken / "half.pt"
    yolo.write_bytes(real.weights.yolo.read_bytes()[: 1 << 20])
    extra = {"models": {"transcript": {"cut": {"path": str(whisper)}},
                        "objects": {"cut": {"path": str(yolo)}}}}
    video = make_video(colors=("red", "blue"), seconds_each=1.0, audio=True)
    summary, proc, arts = annotate(
        real, video, ["metadata", "transcript", "objects", "scenes"],
        {"transcript": {"model": "cut"}, "objects": {"model": "cut"}}, "broken", extra=extra)
    assert summary["status"] == "failed"
    errors = summary["failures"]
    assert set(errors) == {"transcript", "objects"}
    for pipeline, path in (("transcript", whisper), ("objects", yolo)):
        err = errors[pipeline]
        assert err["code"] == "MODEL_INVALID"
        assert err["message"].startswith(f"{pipeline}: cannot load model 'cut'")
        assert str(path) in err["message"]
        assert "models add" in err["hint"]
    assert "CTranslate2" in errors["transcript"]["hint"]
    assert len(arts["scene"]) == 2 and len(arts["video.metadata"]) == 1
    status = run_status(real, "broken")
    assert status["scenes"][0] == status["metadata"][0] == "completed"
    assert status["transcript"][0] == status["objects"][0] == "failed"
    assert "MODEL_INVALID" in (status["objects"][1] or "")


def test_a_yolo_file_that_is_not_a_detector(real: SimpleNamespace, tmp_path: Path) -> None:
    """A YOLO classifier: `models add` refuses it, and a job naming it fails with the fix."""
    cls = tmp_path / "classify.pt"
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "yolo")}
    # one process builds a classifier (an ultralytics architecture, random weights) and loads it
    # as a job's child would: the error names the pipeline, the file and the fix
    script = (
        "import sys\nfrom pathlib import Path\nfrom ultralytics import YOLO\n"
        "from rtc_annotator.pipelines.models import ModelEntry\n"
        "from rtc_annotator.pipelines.objects import load_yolo\n"
        "from rtc_annotator.pipelines.base import RunContext, ModelInvalid\n"
        "YOLO('yolov8n-cls.yaml').save(sys.argv[1])\n"
        "try:\n"
        "    load_yolo(ModelEntry('objects', 'cls', Path(sys.argv[1]), 'config'),"
        " RunContext('j', cache_dir=Path(sys.argv[2])))\n"
        "except ModelInvalid as e:\n"
        "    print('ERR', e.message, '|', e.hint)\n")
    out = subprocess.run([sys.executable, "-c", script, str(cls), str(tmp_path / "cache")],
                         capture_output=True, text=True, timeout=300, env=env).stdout
    assert f"ERR objects: {cls} is a YOLO classify model, not a detector" in out
    assert "objects option model" in out
    # `models add` refuses it and records nothing
    cfg = tmp_path / "c.toml"
    cfg.write_text(tomli_w.dumps({"worker": {"models_dir": str(tmp_path / "md"),
                                          "cache_dir": str(tmp_path / "cache")}}))
    (tmp_path / "md").mkdir()
    r = subprocess.run([sys.executable, "-m", "rtc_annotator", "models", "add", str(cls),
                        "--name", "cls", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode != 0
    assert "not a usable objects model" in r.stderr and "classify" in r.stderr
    assert "not a detector" in r.stderr
    assert not (tmp_path / "md" / "models.json").exists()


def test_pipelines_list_json_shows_the_models(real: SimpleNamespace) -> None:
    cfg = real.root / "list.toml"
    cfg.write_text(tomli_w.dumps(model_config(real.models_dir, real.cache, real.root / "l.db")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    r = subprocess.run([sys.executable, "-m", "rtc_annotator", "pipelines", "list", "--json",
                        "--config", str(cfg)], capture_output=True, text=True, timeout=300,
                       env=env)
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    for name in ("transcript", "objects", "ocr"):
        assert rows[name]["available"], rows[name]["reason"]
        assert rows[name]["profiles"] == ["fast"]
    (people,) = rows["objects"]["models"]
    assert (people["name"], people["kind"], people["classes"]) == ("people", "yolo",
                                                                  ["Normal", "Fall"])
    assert len(people["sha256"]) == 64
    assert [m["name"] for m in rows["transcript"]["models"]] == ["tiny.en"]
    assert [m["name"] for m in rows["ocr"]["models"]] == ["en"]
