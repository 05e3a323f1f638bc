"""``objects`` pipeline: ultralytics YOLO on frames sampled at a configurable rate, batched.

Weights come from ``<models_dir>/ultralytics/<name>`` (name from the profile, or the ``model``
option); ``model`` may also name one of ultralytics' packaged ``*.yaml`` architectures, which
builds the network with random weights (tests, smoke runs). ultralytics is imported with
``YOLO_OFFLINE=1`` and its config dir under models_dir so it never reaches the network.
With ``track`` on, frames go one by one through ``model.track(persist=True)`` and detections
carry a ``track_id``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from rtc_annotator.config import Settings
from rtc_annotator.pipelines.base import (
    Availability,
    ModelNotAvailable,
    Pipeline,
    PipelineOptions,
    PipelineOutput,
    RunContext,
)
from rtc_annotator.pipelines.frames import Frame, iter_frames
from rtc_annotator.pipelines.gate import ChangeGate, GateSettings
from rtc_annotator.pipelines.profiles import probe_models, resolve_model

SCHEMA_VERSION = 1
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.(pt|yaml|onnx|engine)$")


class ObjectsOptions(PipelineOptions):
    """Options of the ``objects`` pipeline."""

    sample_every_ms: int = Field(default=1000, ge=1, description="One frame per this many ms.")
    batch: int = Field(default=8, ge=1, le=256, description="Frames per inference batch.")
    confidence: float = Field(default=0.25, ge=0, le=1, description="Minimum confidence.")
    iou: float = Field(default=0.7, gt=0, le=1, description="NMS IoU threshold.")
    imgsz: int = Field(default=640, ge=32, le=4096, description="Inference image size.")
    track: bool = Field(default=False, description="Track objects across samples (track_id).")
    gate: bool = Field(
        default=False, description="Still content (slides, a fixed camera on an empty room): "
        "run the model only on samples whose picture changed; the others repeat the last "
        "detections. Off by default: in moving video nearly every sample changes, so the gate "
        "would only add its comparisons.")
    gate_threshold: float = Field(
        default=4.0, gt=0, lt=255, description="Grey-level change that counts as a change.")
    model: str | None = Field(
        default=None,
        description="Weights file in <models_dir>/ultralytics, or a packaged *.yaml (random "
        "weights); default from the profile.",
    )

    @field_validator("model")
    @classmethod
    def _plain_name(cls, v: str | None) -> str | None:
        if v is not None and not _MODEL_NAME.match(v):
            raise ValueError("must be a plain file name like yolo11n.pt or yolo11n.yaml")
        return v


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


def _offline_env(models_dir: Path | None) -> None:
    os.environ["YOLO_OFFLINE"] = "1"
    if models_dir is not None:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(models_dir / "ultralytics" / "config"))


def load_yolo(options: ObjectsOptions, context: RunContext) -> Any:
    _offline_env(context.models_dir)
    if options.model is not None and options.model.endswith(".yaml"):
        from ultralytics import YOLO

        return YOLO(options.model)
    if options.model is not None:
        path = (context.models_dir / "ultralytics" / options.model) if context.models_dir else None
        if path is None or not path.is_file():
            raise ModelNotAvailable(
                f"objects model {options.model} is not in {context.models_dir}/ultralytics",
                hint="copy it there or run rtc-annotator models fetch on a login node",
            )
    else:
        _, path = resolve_model("objects", context.profile, context.models_dir)
    from ultralytics import YOLO

    return YOLO(str(path))


class ObjectsPipeline(Pipeline):
    name: ClassVar[str] = "objects"
    version: ClassVar[str] = "1.0"
    artifact_types: ClassVar[tuple[str, ...]] = ("object.detection",)
    requirements: ClassVar[tuple[str, ...]] = ("torch", "ultralytics")
    options_model: ClassVar[type[PipelineOptions]] = ObjectsOptions

    def probe(self, settings: Settings) -> Availability:
        _offline_env(settings.worker.models_dir)
        return probe_models(self.name, self.requirements, settings)

    def run(
        self, video: Path, options: PipelineOptions, context: RunContext
    ) -> Iterator[PipelineOutput]:
        assert isinstance(options, ObjectsOptions)
        model = load_yolo(options, context)
        half = context.device == "cuda" and context.profile != "high_quality"
        kwargs = {"conf": options.confidence, "iou": options.iou, "imgsz": options.imgsz,
                  "device": "0" if context.device == "cuda" else "cpu", "half": half,
                  "verbose": False}
        batch: list[Frame] = []
        # (frame, read?) in order: a frame the gate skipped repeats the last read's detections
        order: list[tuple[Frame, bool]] = []
        gate = ChangeGate(GateSettings(threshold=options.gate_threshold, bands=False)) \
            if options.gate else None
        last: list[dict[str, Any]] = []

        def flush() -> Iterator[PipelineOutput]:
            nonlocal last
            if options.track:
                results = [model.track(f.image, persist=True, **kwargs)[0] for f in batch]
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

        for frame in iter_frames(video, every_ms=options.sample_every_ms):
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
            context.extra["gate"] = gate.stats.as_dict()
