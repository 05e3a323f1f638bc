"""Registry and probing: what this machine can run, with a reason for what it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtc_annotator.config import Settings, WorkerSettings
from rtc_annotator.pipelines.base import UnknownPipeline
from rtc_annotator.pipelines.gpu import parse_nvidia_smi
from rtc_annotator.pipelines.registry import DEFAULT_REGISTRY, list_pipelines


def _by_name(settings: Settings) -> dict:
    return {s.name: s for s in list_pipelines(settings)}


def test_model_free_pipelines_always_run_and_others_say_why(tmp_path: Path) -> None:
    rows = _by_name(Settings(worker=WorkerSettings(models_dir=tmp_path)))
    assert rows["metadata"].ok and rows["scenes"].ok
    transcript = rows["transcript"]
    assert not transcript.ok
    assert "faster-whisper/base/model.bin" in transcript.reason
    for name in ("objects", "ocr"):
        if not rows[name].ok:
            assert rows[name].reason.startswith(("cannot import", "no usable weights"))


def test_unset_models_dir_is_the_reason() -> None:
    rows = _by_name(Settings(worker=WorkerSettings(models_dir=None)))
    assert "models_dir is not set" in rows["transcript"].reason


def test_weights_present_make_a_profile_available(tmp_path: Path) -> None:
    pytest.importorskip("faster_whisper", reason="faster-whisper is not installed")
    (tmp_path / "faster-whisper" / "base").mkdir(parents=True)
    (tmp_path / "faster-whisper" / "base" / "model.bin").write_bytes(b"x")
    (tmp_path / "faster-whisper" / "base" / "config.json").write_text("{}")
    row = _by_name(Settings(worker=WorkerSettings(models_dir=tmp_path)))["transcript"]
    assert row.ok and row.profiles == ("fast",)
    assert "balanced: small missing" in row.reason


def test_pipelines_not_offered_by_config() -> None:
    rows = _by_name(Settings(worker=WorkerSettings(pipelines=["metadata"])))
    assert rows["metadata"].ok
    assert not rows["scenes"].ok and "[worker] pipelines" in rows["scenes"].reason


def test_unknown_pipeline() -> None:
    with pytest.raises(UnknownPipeline) as err:
        DEFAULT_REGISTRY.get("faces")
    assert err.value.code == "UNKNOWN_PIPELINE" and "scenes" in err.value.hint


def test_nvidia_smi_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "0, NVIDIA H200, 143771\n1, NVIDIA A100-SXM4-80GB, 81920\nNo devices were found\n"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = parse_nvidia_smi(text)
    assert [(g.index, g.name, g.memory_mb) for g in gpus] == [
        (0, "NVIDIA H200", 143771), (1, "NVIDIA A100-SXM4-80GB", 81920)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # index: the position among visible GPUs
    assert [(g.index, g.name) for g in parse_nvidia_smi(text)] == [(0, "NVIDIA A100-SXM4-80GB")]
