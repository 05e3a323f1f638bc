from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from rtc_annotator.pipelines.base import RunContext, VideoError
from rtc_annotator.pipelines.metadata import MetadataPipeline, is_variable_rate, read_metadata


def test_constant_rate_video(make_video) -> None:
    video = make_video(colors=("red", "blue", "green"), seconds_each=1.0, fps=25)
    meta = read_metadata(video)
    assert meta == {
        "duration_ms": 3000, "fps": 25.0, "variable_frame_rate": False, "codec": "h264",
        "width": 160, "height": 120, "size_bytes": video.stat().st_size,
    }


def test_variable_rate_video(vfr_video: Path) -> None:
    meta = read_metadata(vfr_video)
    assert meta["variable_frame_rate"] is True
    assert abs(meta["duration_ms"] - 3500) <= 34  # within one 30 fps frame
    assert 20 < meta["fps"] < 26  # average: 80 frames over ~3.5 s
    assert (meta["width"], meta["height"], meta["codec"]) == (160, 120, "h264")


def test_rounding_in_millisecond_timebases_is_not_vfr() -> None:
    ntsc_ms = [round(i * 1001 / 30) for i in range(300)]  # 33/34 ms alternating
    assert not is_variable_rate(ntsc_ms, Fraction(1, 1000))
    assert not is_variable_rate([i * 512 for i in range(100)], Fraction(1, 12800))
    assert is_variable_rate([0, 40, 80, 180, 280], Fraction(1, 1000))


def test_pipeline_yields_one_artifact(make_video, not_a_video: Path) -> None:
    video = make_video(colors=("red",), seconds_each=1.0, fps=25)
    (out,) = list(MetadataPipeline().run(video, MetadataPipeline().parse_options({}),
                                         RunContext("j")))
    assert out.artifact_type == "video.metadata" and out.schema_version == 1
    assert (out.span_start_ms, out.span_end_ms) == (0, 1000)
    with pytest.raises(VideoError):
        read_metadata(not_a_video)
