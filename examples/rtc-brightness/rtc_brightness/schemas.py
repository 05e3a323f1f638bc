"""The payload schema of ``frame.brightness`` v1 (entry-point group rtc_annotator.schemas)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from rtc_annotator.artifacts.schemas import PluginPayload


class FrameBrightnessV1(PluginPayload):
    """``frame.brightness`` v1: brightness of the video over one sample interval."""

    artifact_type: ClassVar[str] = "frame.brightness"
    schema_version: ClassVar[int] = 1

    frame_pts_ms: int = Field(ge=0, description="Presentation time of the sampled frame, ms.")
    mean: float = Field(ge=0.0, le=1.0, description="Mean luma of the frame, 0 (black)..1.")
    contrast: float = Field(ge=0.0, le=1.0, description="Standard deviation of luma, 0..1.")
    dark: bool = Field(description="True when mean is below the pipeline's dark_below option.")
