"""transcript: conversion from faster-whisper's real Segment/Word types; model errors (real
inference: test_real_models.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rtc_annotator.pipelines.base import ModelNotAvailable, RunContext
from rtc_annotator.pipelines.transcript import TranscriptPipeline, segment_payload

fw = pytest.importorskip("faster_whisper.transcribe", reason="faster-whisper is not installed")


def test_segment_to_payload() -> None:
    words = [fw.Word(start=1.2, end=1.5, word=" Hello", probability=0.9),
             fw.Word(start=1.5, end=1.9, word=" world.", probability=1.2),
             fw.Word(start=1.9, end=1.9, word=" ", probability=0.1)]
    seg = fw.Segment(id=1, seek=0, start=1.2, end=1.9, text=" Hello world. ", tokens=[1, 2],
                     avg_logprob=-0.25, compression_ratio=1.1, no_speech_prob=0.01,
                     words=words, temperature=0.0)
    payload = segment_payload(seg, "en")
    assert payload == {
        "text": "Hello world.", "language": "en", "start_ms": 1200, "end_ms": 1900,
        "confidence": pytest.approx(math.exp(-0.25)),
        "words": [
            {"word": "Hello", "start_ms": 1200, "end_ms": 1500, "probability": 0.9},
            {"word": "world.", "start_ms": 1500, "end_ms": 1900, "probability": 1.0},
        ],
    }
    no_words = fw.Segment(id=2, seek=0, start=3.0, end=2.999, text="x", tokens=[],
                          avg_logprob=0.5, compression_ratio=1.0, no_speech_prob=0.0,
                          words=None, temperature=None)
    p2 = segment_payload(no_words, "de")
    assert p2["words"] == [] and p2["end_ms"] >= p2["start_ms"] and p2["confidence"] == 1.0


def test_missing_weights_is_a_clear_error(audio_video: Path, tmp_path: Path) -> None:
    pipeline = TranscriptPipeline()
    ctx = RunContext("j", profile="fast", models_dir=tmp_path)
    with pytest.raises(ModelNotAvailable) as err:
        list(pipeline.run(audio_video, pipeline.parse_options({}), ctx))
    assert err.value.message.startswith("transcript: model 'base' (profile fast) is not usable")
    assert str(tmp_path / "faster-whisper" / "base" / "model.bin") in err.value.message
    assert "models add PATH --pipeline transcript --name base" in err.value.hint
    assert "models fetch --profile fast" in err.value.hint


def test_a_model_the_machine_does_not_hold(audio_video: Path, tmp_path: Path) -> None:
    pipeline = TranscriptPipeline()
    ctx = RunContext("j", profile="fast", models_dir=tmp_path)
    with pytest.raises(ModelNotAvailable) as err:
        list(pipeline.run(audio_video, pipeline.parse_options({"model": "medium.en"}), ctx))
    assert err.value.message.startswith(
        "transcript: this machine holds no model named 'medium.en' (asked for by the job)")
    assert "models add PATH --pipeline transcript --name medium.en" in err.value.hint
