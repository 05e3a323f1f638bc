"""The ``brightness`` pipeline (entry-point group rtc_annotator.pipelines).

One ``frame.brightness`` artifact per sampled frame, spanning from that frame to the next
sample (the last one to the end of the video). Luma is computed with numpy from frames that the
job's shared decoder scales down to ``width`` pixels, which is plenty for an average.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from rtc_annotator.pipelines import Pipeline, PipelineOutput, RunContext
from rtc_annotator.pipelines.base import PipelineOptions
from rtc_annotator.pipelines.frames import open_video

ARTIFACT = "frame.brightness"
SCHEMA_VERSION = 1
_LUMA = np.array([0.114, 0.587, 0.299], dtype=np.float32)  # BT.601 weights for B, G, R


class BrightnessOptions(PipelineOptions):
    """Options of ``brightness`` (unknown keys are refused)."""

    sample_every_ms: int = Field(default=1000, ge=40, description="One frame per this many ms.")
    width: int = Field(default=160, ge=16, le=1920, description="Analyse frames this wide.")
    dark_below: float = Field(default=0.15, ge=0.0, le=1.0, description="Mean luma called dark.")


def luma_stats(image: Any) -> tuple[float, float]:
    """(mean, standard deviation) of a BGR uint8 image's luma, both 0..1."""
    luma = image.astype(np.float32) @ _LUMA / 255.0
    return float(luma.mean()), float(luma.std())


class BrightnessPipeline(Pipeline):
    name: ClassVar[str] = "brightness"
    version: ClassVar[str] = "0.1.0"
    artifact_types: ClassVar[tuple[str, ...]] = (ARTIFACT,)
    requirements: ClassVar[tuple[str, ...]] = ("numpy", "av")
    options_model: ClassVar[type[PipelineOptions]] = BrightnessOptions
    uses_frames: ClassVar[bool] = True

    def run(self, video: Path, options: PipelineOptions,
            context: RunContext) -> Iterator[PipelineOutput]:
        assert isinstance(options, BrightnessOptions)
        container = open_video(video)  # a clear VIDEO_ERROR for what is not a video
        duration_ms = round(container.duration / 1000) if container.duration else 0
        container.close()
        previous: tuple[int, dict[str, Any]] | None = None
        for frame in context.frames(video, every_ms=options.sample_every_ms,
                                    max_width=options.width):
            if previous is not None:
                yield self._output(*previous, end_ms=frame.pts_ms)
            mean, std = luma_stats(frame.image)
            previous = (frame.pts_ms, {"frame_pts_ms": frame.pts_ms, "mean": mean,
                                       "contrast": min(1.0, std),
                                       "dark": mean < options.dark_below})
        if previous is not None:
            yield self._output(*previous, end_ms=max(duration_ms, previous[0]))

    @staticmethod
    def _output(start_ms: int, payload: dict[str, Any], end_ms: int) -> PipelineOutput:
        return PipelineOutput(ARTIFACT, SCHEMA_VERSION, start_ms, max(start_ms, end_ms), payload)
