"""``objects`` pipeline: ultralytics YOLO on frames sampled at a configurable rate, batched.

The weights (``.pt`` or ``.onnx``, a detection model) are named by the ``model`` option or the
profile (see :mod:`.models`: ``<models_dir>/ultralytics/<file>`` for the built-in names, any file
added with ``models add`` or ``[models.objects.<name>]``). ultralytics runs with
``YOLO_OFFLINE=1`` and its settings dir in the job's writable cache dir (never models_dir, which
may be read-only); its import may not change the job's thread settings (it sets
``OMP_NUM_THREADS=1``; the value from before is put back). With ``track`` on, frames go one by one
through ``model.track(persist=True)`` and detections carry a ``track_id``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from rtc_annotator.config import Settings
from rtc_annotator.pipelines.base import (
    Availability,
    ModelInvalid,
    Pipeline,
    PipelineOptions,
    PipelineOutput,
    RunContext,
)
from rtc_annotator.pipelines.frames import Frame
from rtc_annotator.pipelines.gate import ChangeGate, GateSettings
from rtc_annotator.pipelines.models import ModelEntry, ModelOptions, load_failed, model_for
from rtc_annotator.pipelines.profiles import probe_models

SCHEMA_VERSION = 1


class ObjectsOptions(ModelOptions):
    """Options of the ``objects`` pipeline."""

    sample_every_ms: int = Field(default=1000, ge=1, description="One frame per this many ms.")
    batch: int = Field(default=8, ge=1, le=256, description="Frames per inference batch.")
    confidence: float = Field(default=0.25, ge=0, le=1, description="Minimum confidence.")
    iou: float = Field(default=0.7, gt=0, le=1, description="NMS IoU threshold.")
    imgsz: int = Field(default=640, ge=32, le=4096, description="Inference image size.")
    track: bool = Field(default=False, description="Track objects across samples (track_id).")
    tracker: Literal["bytetrack", "botsort"] = Field(
        default="bytetrack", description="ultralytics tracker used with track (its own "
        "default varies by version).")
    gate: bool = Field(
        default=False, description="Still content (slides, a fixed camera on an empty room): "
        "run the model only on samples whose picture changed; the others repeat the last "
        "detections. Off by default: in moving video nearly every sample changes, so the gate "
        "would only add its comparisons.")
    gate_threshold: float = Field(
        default=16.0, gt=0, lt=255, description="Grey-level change that counts as a change.")

def result_payloads(result: Any, frame_pts_ms: int) -> list[dict[str, Any]]:
    """Convert one ultralytics ``Results`` to ``object.detection`` payloads."""
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return []
    xyxyn = boxes.xyxyn.cpu().numpy()
    conf = boxes.conf.cpu().numpy()
    cls = boxes.cls.cpu().numpy()
    ids = boxes.id.cpu().numpy() if getattr(boxes, "id", None) is not None else None
    names = result.names
    out = []
    for i in range(len(conf)):
        x1, y1, x2, y2 = (min(1.0, max(0.0, float(v))) for v in xyxyn[i])
        out.append(
            {
                "label": str(names[int(cls[i])]),
                "confidence": min(1.0, max(0.0, float(conf[i]))),
                "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
                "frame_pts_ms": int(frame_pts_ms),
                "track_id": int(ids[i]) if ids is not None else None,
            }
        )
    return out


@contextlib.contextmanager
def ultralytics_env(cache_dir: Path | None) -> Iterator[None]:
    """Offline, settings in a writable dir; the caller's OMP_NUM_THREADS and OpenCV threads
    are put back after ultralytics changed them on import."""
    import cv2

    os.environ["YOLO_OFFLINE"] = "1"
    config = (cache_dir or Path(tempfile.gettempdir()) / "rtc-annotator") / "ultralytics"
    config.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config))
    before = os.environ.get("OMP_NUM_THREADS")
    cv_threads = cv2.getNumThreads()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before
        cv2.setNumThreads(cv_threads)


@dataclass
class LoadedYolo:
    """A loaded detector and the settings it runs with."""

    model: Any
    threads: int
    """torch threads for inference (ultralytics would set min(8, cores - 1))."""
    half_arg: tuple[str, Any]
    """How this ultralytics version is asked for fp16: quantize=16, or the older half=True."""


def load_yolo(entry: ModelEntry, context: RunContext) -> LoadedYolo:
    """Load the weights; a clear MODEL_INVALID for damaged files and non-detectors."""
    with ultralytics_env(context.cache_dir):
        import torch

        threads = context.threads or torch.get_num_threads()
        from ultralytics import YOLO
        from ultralytics.cfg import DEFAULT_CFG_DICT

        try:
            model = YOLO(str(entry.path), task="detect" if entry.path.suffix == ".onnx" else None)
        except Exception as exc:
            raise load_failed(entry, exc, "the file is damaged or not an ultralytics YOLO "
                              "checkpoint: copy it again, or export it again from training"
                              ) from None
    if model.task != "detect":
        raise ModelInvalid(
            f"objects: {entry.path} is a YOLO {model.task} model, not a detector",
            hint="objects needs a detection model (trained with task=detect); choose another "
            "with the objects option model, see `rtc-annotator models list`")
    half = ("quantize", 16) if "quantize" in DEFAULT_CFG_DICT else ("half", True)
    return LoadedYolo(model, threads, half)


class ObjectsPipeline(Pipeline):
    name: ClassVar[str] = "objects"
    version: ClassVar[str] = "1.0"
    artifact_types: ClassVar[tuple[str, ...]] = ("object.detection",)
    requirements: ClassVar[tuple[str, ...]] = ("torch", "ultralytics")
    options_model: ClassVar[type[PipelineOptions]] = ObjectsOptions
    uses_frames: ClassVar[bool] = True

    def probe(self, settings: Settings) -> Availability:
        return probe_models(self.name, self.requirements, settings)

    _ready: tuple[LoadedYolo, dict[str, Any]] | None = None

    def prepare(self, options: PipelineOptions, context: RunContext) -> None:
        """Load the weights and set the predictor up (see :meth:`Pipeline.prepare`)."""
        assert isinstance(options, ObjectsOptions)
        loaded = load_yolo(model_for(context, self.name, options.model), context)
        kwargs: dict[str, Any] = {
            "conf": options.confidence, "iou": options.iou, "imgsz": options.imgsz,
            "device": "0" if context.device == "cuda" else "cpu", "verbose": False}
        if context.device == "cuda" and context.profile != "high_quality":
            kwargs[loaded.half_arg[0]] = loaded.half_arg[1]
        import numpy as np
        import torch

        # the first call sets the predictor up, and with it torch's threads to
        # min(8, cores - 1): run it on a blank image, then put the threads back
        with ultralytics_env(context.cache_dir):
            loaded.model.predict(np.zeros((64, 64, 3), dtype=np.uint8), **kwargs)
        torch.set_num_threads(loaded.threads)
        self._ready = (loaded, kwargs)

    def run(
        self, video: Path, options: PipelineOptions, context: RunContext
    ) -> Iterator[PipelineOutput]:
        assert isinstance(options, ObjectsOptions)
        if self._ready is None:
            self.prepare(options, context)
        assert self._ready is not None
        loaded, kwargs = self._ready
        model = loaded.model
        batch: list[Frame] = []
        # (frame, read?) in order: a frame the gate skipped repeats the last read's detections
        order: list[tuple[Frame, bool]] = []
        gate = ChangeGate(GateSettings(threshold=options.gate_threshold, bands=False)) \
            if options.gate else None
        last: list[dict[str, Any]] = []

        def flush() -> Iterator[PipelineOutput]:
            nonlocal last
            if options.track:
                results = [model.track(f.image, persist=True, tracker=f"{options.tracker}.yaml",
                                       **kwargs)[0] for f in batch]
            else:
                results = model.predict([f.image for f in batch], **kwargs) if batch else []
            read = iter(results)
            for frame, was_read in order:
                if was_read:
                    last = result_payloads(next(read), frame.pts_ms)
                    payloads = last
                else:
                    payloads = [{**p, "frame_pts_ms": frame.pts_ms} for p in last]
                for payload in payloads:
                    yield PipelineOutput(
                        "object.detection", SCHEMA_VERSION, frame.pts_ms, frame.pts_ms, payload
                    )
            batch.clear()
            order.clear()

        for frame in context.frames(video, every_ms=options.sample_every_ms):
            if gate is not None and gate.decide(frame.image, frame.pts_ms).decision == "skip":
                order.append((frame, False))
            else:
                batch.append(frame)
                order.append((frame, True))
            if len(batch) >= options.batch:
                yield from flush()
        if order:
            yield from flush()
        if gate is not None:
            context.stats[self.name] = {"gate": gate.stats.as_dict()}
