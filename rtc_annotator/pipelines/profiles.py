"""Model profiles: ``fast``, ``balanced``, ``high_quality`` -> model and precision per pipeline.

Each :class:`ModelSpec` names the model (a faster-whisper size, an ultralytics weights file, the
easyocr recognizer), the precision on GPU and on CPU, and the GPU memory it needs. This table is
the default: ``[profiles.<profile>]`` in the configuration picks other models by name, and
:mod:`.models` says where every named model lives. The built-in names are laid out under
``[worker] models_dir`` as ``rtc-annotator models fetch`` writes them::

    <models_dir>/faster-whisper/<size>/model.bin (+ config.json, tokenizer.json, vocabulary.*)
    <models_dir>/ultralytics/<name>.pt
    <models_dir>/easyocr/<detector>.pth, <recognizer>.pth
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtc_annotator.config import MODEL_PROFILES, Settings
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.pipelines.base import Availability, module_importable
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

    def precision(self, device: str) -> str:
        return self.gpu_precision if device == "cuda" else self.cpu_precision


def _whisper(size: str, gpu: str, cpu: str, mb: int) -> ModelSpec:
    return ModelSpec(size, gpu, cpu, mb)


def _yolo(name: str, gpu: str, mb: int) -> ModelSpec:
    return ModelSpec(name, gpu, "fp32", mb)


def _easyocr(recognizer: str, mb: int) -> ModelSpec:
    return ModelSpec(recognizer, "fp32", "fp32", mb)


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


def probe_models(pipeline: str, requirements: tuple[str, ...], settings: Settings) -> Availability:
    """Availability of a model pipeline: libraries installed, models held and usable, GPU memory.

    Nothing is imported: libraries are looked up with :func:`module_importable` (find_spec),
    YOLO files are read in a subprocess (:func:`~.models.describe`)."""
    from rtc_annotator.pipelines.models import Catalog, describe, meta_cache, profiles_using

    for module in requirements:
        reason = module_importable(module)
        if reason:
            extra = PIPELINE_EXTRAS.get(pipeline)
            if extra:
                reason += f" (install: pip install -c constraints.txt 'rtc-annotator[{extra}]')"
            return Availability(False, reason)
    try:
        catalog = Catalog.from_settings(settings)
    except RtcAnnotatorError as exc:
        return Availability(False, exc.message)
    entries = catalog.entries.get(pipeline, {})
    if settings.worker.models_dir is None and not entries:
        return Availability(
            False, "[worker] models_dir is not set (fill it with `rtc-annotator models add` or "
            "`rtc-annotator models fetch`)"
        )
    gpus = detect_gpus()
    biggest = max((g.memory_mb for g in gpus), default=None)
    cache = meta_cache(settings)
    usable: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for name, entry in sorted(entries.items()):
        if entry.problem():
            continue
        info = describe(entry, cache)
        if entry.path.suffix == ".onnx" and module_importable("onnxruntime"):
            info["error"] = ("ONNX weights need onnxruntime: pip install onnxruntime "
                             "(onnxruntime-gpu on a GPU worker)")
        if "error" in info:
            notes.append(f"model {name}: {info.pop('error')}")
            continue
        usable[name] = info
    for profile in MODEL_PROFILES:
        name = catalog.profile_model(pipeline, profile)
        spec = model_spec(pipeline, profile)
        chosen = entries.get(name)
        if name in usable:
            if biggest is not None and spec is not None and biggest < spec.min_gpu_mb:
                notes.append(f"{profile}: needs {spec.min_gpu_mb} MiB GPU memory, "
                             f"largest has {biggest}")
                usable.pop(name)
        elif chosen is None:
            notes.append(f"{profile}: no model named {name}")
        elif chosen.problem():
            notes.append(f"{profile}: {name} {chosen.problem()}")
    if not usable:
        where = settings.worker.models_dir or "the configured [models] tables"
        return Availability(False, f"no usable weights in {where}: " + "; ".join(notes))
    profiles = profiles_using(catalog, pipeline, set(usable))
    return Availability(True, "; ".join(notes), profiles, tuple(usable.values()))
