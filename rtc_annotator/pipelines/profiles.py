"""Model profiles: ``fast``, ``balanced``, ``high_quality`` -> model and precision per pipeline.

Each :class:`ModelSpec` names the model (a faster-whisper size, an ultralytics weights file, the
easyocr detector and recognizer files), the precision on GPU and on CPU, and the GPU memory it
needs. Files live under ``[worker] models_dir``, laid out as ``rtc-annotator models fetch`` writes
them::

    <models_dir>/faster-whisper/<size>/model.bin (+ config.json, tokenizer.json, vocabulary.*)
    <models_dir>/ultralytics/<name>.pt
    <models_dir>/easyocr/<detector>.pth, <recognizer>.pth
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rtc_annotator.config import MODEL_PROFILES, Settings
from rtc_annotator.pipelines.base import (
    Availability,
    ModelNotAvailable,
    OptionsError,
    check_profile,
    module_importable,
)
from rtc_annotator.pipelines.gpu import detect_gpus


@dataclass(frozen=True)
class ModelSpec:
    """Which model a pipeline uses under one profile."""

    model: str
    """Model name: whisper size, YOLO weights file name, or easyocr recognizer name."""
    gpu_precision: str
    """Precision on a GPU (faster-whisper compute type, or fp16/fp32)."""
    cpu_precision: str
    """Precision on CPU."""
    min_gpu_mb: int
    """GPU memory the model needs to run with a small batch."""
    files: tuple[str, ...]
    """Paths relative to models_dir that must exist."""

    def precision(self, device: str) -> str:
        return self.gpu_precision if device == "cuda" else self.cpu_precision


def _whisper(size: str, gpu: str, cpu: str, mb: int) -> ModelSpec:
    return ModelSpec(size, gpu, cpu, mb, (f"faster-whisper/{size}/model.bin",))


def _yolo(name: str, gpu: str, mb: int) -> ModelSpec:
    return ModelSpec(name, gpu, "fp32", mb, (f"ultralytics/{name}",))


EASYOCR_DETECTOR = "craft_mlt_25k.pth"


def _easyocr(recognizer: str, mb: int) -> ModelSpec:
    return ModelSpec(
        recognizer, "fp32", "fp32", mb, (f"easyocr/{EASYOCR_DETECTOR}", f"easyocr/{recognizer}.pth")
    )


PROFILES: dict[str, dict[str, ModelSpec]] = {
    "fast": {
        "transcript": _whisper("base", "int8_float16", "int8", 1000),
        "objects": _yolo("yolo11n.pt", "fp16", 1000),
        "ocr": _easyocr("english_g2", 1500),
    },
    "balanced": {
        "transcript": _whisper("small", "float16", "int8", 2000),
        "objects": _yolo("yolo11m.pt", "fp16", 2000),
        "ocr": _easyocr("english_g2", 1500),
    },
    "high_quality": {
        "transcript": _whisper("large-v3", "float16", "int8", 5000),
        "objects": _yolo("yolo11x.pt", "fp32", 4000),
        "ocr": _easyocr("english_g2", 1500),
    },
}
assert tuple(PROFILES) == MODEL_PROFILES


PIPELINE_EXTRAS = {"transcript": "transcribe", "objects": "detect,gpu", "ocr": "ocr,gpu"}
"""The pyproject extras that bring each model pipeline's libraries."""


def model_spec(pipeline: str, profile: str) -> ModelSpec | None:
    """The model spec of ``pipeline`` under ``profile`` (None for model-free pipelines)."""
    return PROFILES[profile].get(pipeline)


def missing_files(spec: ModelSpec, models_dir: Path | None) -> list[str]:
    """Files of ``spec`` absent from ``models_dir`` (all of them when it is unset)."""
    if models_dir is None:
        return list(spec.files)
    return [f for f in spec.files if not (models_dir / f).is_file()]


def probe_models(pipeline: str, requirements: tuple[str, ...], settings: Settings) -> Availability:
    """Availability of a model pipeline: imports, weights per profile, GPU memory."""
    for module in requirements:
        reason = module_importable(module)
        if reason:
            extra = PIPELINE_EXTRAS.get(pipeline)
            if extra:
                reason += f" (install: pip install -c constraints.txt 'rtc-annotator[{extra}]')"
            return Availability(False, reason)
    models_dir = settings.worker.models_dir
    if models_dir is None:
        return Availability(
            False, "[worker] models_dir is not set (fill it with `rtc-annotator models fetch`)"
        )
    gpus = detect_gpus()
    biggest = max((g.memory_mb for g in gpus), default=None)
    present: list[str] = []
    notes: list[str] = []
    for profile in MODEL_PROFILES:
        spec = model_spec(pipeline, profile)
        if spec is None:
            continue
        missing = missing_files(spec, models_dir)
        if missing:
            notes.append(f"{profile}: missing {', '.join(missing)}")
        elif biggest is not None and biggest < spec.min_gpu_mb:
            notes.append(
                f"{profile}: needs {spec.min_gpu_mb} MiB GPU memory, largest has {biggest}"
            )
        else:
            present.append(profile)
    if not present:
        return Availability(False, f"no usable weights in {models_dir}: " + "; ".join(notes))
    return Availability(True, "; ".join(notes), tuple(present))


def resolve_model(pipeline: str, profile: str, models_dir: Path | None) -> tuple[ModelSpec, Path]:
    """Spec and first weights path of ``pipeline`` under ``profile``; raise if absent."""
    check_profile(profile)
    spec = model_spec(pipeline, profile)
    if spec is None:
        raise OptionsError(f"pipeline {pipeline} has no model")
    missing = missing_files(spec, models_dir)
    if missing or models_dir is None:
        where = str(models_dir) if models_dir is not None else "[worker] models_dir (unset)"
        raise ModelNotAvailable(
            f"{pipeline} ({profile}) needs {', '.join(missing)} in {where}",
            hint=f"on a machine with internet run: rtc-annotator models fetch --profile {profile}"
            f" --to {models_dir or 'DIR'}",
        )
    return spec, models_dir / spec.files[0]
