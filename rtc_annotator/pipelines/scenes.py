"""``scenes`` pipeline: PySceneDetect content detection (adaptive as an option) on shared frames.

Frames come from :mod:`rtc_annotator.pipelines.frames` (PyAV, presentation timestamps) and are
handed to the detector as ``FrameTimecode(Timecode(pts, time_base))``, so cut times are the
presentation times of the first frame of each new scene, correct for variable frame rate.
Each scene is yielded as soon as the cut that ends it is found; the last one at the end.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from rtc_annotator.pipelines.base import (
    Pipeline,
    PipelineOptions,
    PipelineOutput,
    RunContext,
)
from rtc_annotator.pipelines.frames import iter_frames, open_video, pts_to_ms

SCHEMA_VERSION = 1
_SCORE_MEMORY = 4096


class ScenesOptions(PipelineOptions):
    """Options of the ``scenes`` pipeline."""

    detector: Literal["content", "adaptive"] = Field(
        default="content", description="content (ContentDetector) or adaptive (AdaptiveDetector)."
    )
    threshold: float | None = Field(
        default=None, gt=0,
        description="Cut threshold: content score (default 27) or adaptive ratio (default 3).",
    )
    min_scene_len_ms: int = Field(
        default=600, ge=0, description="No cut closer than this to the previous one, in ms."
    )
    downscale_width: int = Field(
        default=256, ge=0, description="Analyse frames scaled to this width (0: full size)."
    )
    luma_only: bool = Field(default=False, description="Only consider brightness changes.")


def make_detector(opts: ScenesOptions) -> Any:
    from scenedetect import AdaptiveDetector, ContentDetector

    min_len = opts.min_scene_len_ms / 1000.0
    if opts.detector == "adaptive":
        return AdaptiveDetector(
            adaptive_threshold=opts.threshold or 3.0, min_scene_len=min_len,
            luma_only=opts.luma_only,
        )
    return ContentDetector(
        threshold=opts.threshold or 27.0, min_scene_len=min_len, luma_only=opts.luma_only
    )


def _duration_ms(video: Path) -> int | None:
    container = open_video(video)
    try:
        return round(container.duration / 1000) if container.duration else None
    finally:
        container.close()


def detect_scenes(video: Path, opts: ScenesOptions, context: RunContext | None = None
                  ) -> Iterator[dict[str, Any]]:
    """Yield ``scene`` payloads in order, each as soon as its end is known (frames from
    ``context.frames`` when given, so a job shares its decoding)."""
    from scenedetect import FrameTimecode
    from scenedetect.common import Timecode

    detector = make_detector(opts)
    duration = _duration_ms(video)
    scores: OrderedDict[tuple[int, Fraction], float] = OrderedDict()
    index = 0
    start_ms = 0
    start_score: float | None = None
    last_ms = 0
    last_delta = 0
    last_tc = None
    fps = _fps(video)

    def scene(end_ms: int) -> dict[str, Any]:
        return {"index": index, "start_ms": start_ms, "end_ms": end_ms,
                "boundary_score": start_score}

    def cut_ms(tc: Any) -> int:
        return pts_to_ms(tc.pts, tc.time_base) - origin_ms

    origin_ms = 0
    first = True
    source = context.frames if context is not None else iter_frames
    for frame in source(video, max_width=opts.downscale_width or None):
        if first:
            # ms times are relative to the container start; keep the same zero for cut times
            origin_ms = pts_to_ms(frame.pts, frame.time_base) - frame.pts_ms
            first = False
        tc = FrameTimecode(Timecode(pts=frame.pts, time_base=frame.time_base), fps=fps)
        cuts = detector.process_frame(tc, frame.image)
        score = getattr(detector, "_frame_score", None)
        if score is not None:
            scores[(frame.pts, frame.time_base)] = float(score)
            if len(scores) > _SCORE_MEMORY:
                scores.popitem(last=False)
        for cut in cuts:
            at = cut_ms(cut)
            if at <= start_ms:
                continue
            yield scene(at)
            index += 1
            start_ms = at
            start_score = scores.get((cut.pts, cut.time_base))
        if frame.pts_ms > last_ms:
            last_delta = frame.pts_ms - last_ms
        last_ms = frame.pts_ms
        last_tc = tc
    if last_tc is not None:
        for cut in detector.post_process(last_tc):
            at = cut_ms(cut)
            if at > start_ms:
                yield scene(at)
                index += 1
                start_ms = at
                start_score = scores.get((cut.pts, cut.time_base))
    end = max(duration or 0, last_ms + last_delta, start_ms)
    if last_tc is not None:
        yield scene(end)


def _fps(video: Path) -> Fraction:
    """Average frame rate (only used by PySceneDetect for frame-count approximations)."""
    container = open_video(video)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        return Fraction(rate.numerator, rate.denominator)
    finally:
        container.close()


class ScenesPipeline(Pipeline):
    name: ClassVar[str] = "scenes"
    version: ClassVar[str] = "1.0"
    artifact_types: ClassVar[tuple[str, ...]] = ("scene",)
    requirements: ClassVar[tuple[str, ...]] = ("av", "scenedetect", "cv2")
    options_model: ClassVar[type[PipelineOptions]] = ScenesOptions
    uses_frames: ClassVar[bool] = True

    def run(
        self, video: Path, options: PipelineOptions, context: RunContext
    ) -> Iterator[PipelineOutput]:
        assert isinstance(options, ScenesOptions)
        for payload in detect_scenes(video, options, context):
            yield PipelineOutput(
                "scene", SCHEMA_VERSION, payload["start_ms"], payload["end_ms"], payload
            )
