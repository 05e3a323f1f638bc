"""``metadata`` pipeline: one ``video.metadata`` artifact (duration, fps, VFR flag, codec, size).

Variable frame rate is detected from the presentation-timestamp deltas of the video packets
(demuxed, not decoded, so it is fast): the video is VFR when some delta differs from the median
delta by more than two time-base ticks and more than 1 % (rounding in millisecond time bases,
like Matroska's, makes 29.97 fps alternate 33/34 ms: that is not VFR).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

from rtc_annotator.pipelines.base import (
    Pipeline,
    PipelineOptions,
    PipelineOutput,
    RunContext,
    VideoError,
)
from rtc_annotator.pipelines.frames import open_video, origin_us, pts_to_ms

SCHEMA_VERSION = 1


def is_variable_rate(pts: Sequence[int], time_base: Fraction) -> bool:
    """True when the sorted presentation timestamps are not evenly spaced."""
    ordered = sorted(set(pts))
    deltas = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    if len(deltas) < 2:
        return False
    median = sorted(deltas)[len(deltas) // 2]
    tolerance = max(2, median * 0.01)
    return any(abs(d - median) > tolerance for d in deltas)


def read_metadata(video: Path) -> dict[str, Any]:
    """The ``video.metadata`` payload of ``video``."""
    import av

    container = open_video(video)
    try:
        stream = container.streams.video[0]
        tb = stream.time_base
        time_base = Fraction(tb.numerator, tb.denominator) if tb else Fraction(1, 1000)
        pts: list[int] = []
        last_end = 0
        try:
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                pts.append(int(packet.pts))
                last_end = max(last_end, int(packet.pts) + int(packet.duration or 0))
        except av.FFmpegError as exc:
            raise VideoError(f"cannot read {video.name}: {exc}") from None
        origin = origin_us(container)
        if container.duration:
            duration_ms = round(container.duration / 1000)
        elif pts:
            duration_ms = pts_to_ms(last_end, time_base, origin)
        else:
            duration_ms = 0
        rate = stream.average_rate or stream.guessed_rate
        if rate:
            fps = float(rate)
        elif pts and duration_ms:
            fps = len(pts) * 1000 / duration_ms
        else:
            fps = 0.0
        codec = stream.codec_context.name if stream.codec_context else ""
        return {
            "duration_ms": int(duration_ms),
            "fps": round(fps, 6),
            "variable_frame_rate": is_variable_rate(pts, time_base),
            "codec": str(codec),
            "width": int(stream.codec_context.width),
            "height": int(stream.codec_context.height),
            "size_bytes": video.stat().st_size,
        }
    finally:
        container.close()


class MetadataPipeline(Pipeline):
    name: ClassVar[str] = "metadata"
    version: ClassVar[str] = "1.0"
    artifact_types: ClassVar[tuple[str, ...]] = ("video.metadata",)
    requirements: ClassVar[tuple[str, ...]] = ("av",)

    def run(
        self, video: Path, options: PipelineOptions, context: RunContext
    ) -> Iterator[PipelineOutput]:
        payload = read_metadata(video)
        yield PipelineOutput("video.metadata", SCHEMA_VERSION, 0, payload["duration_ms"], payload)
