from __future__ import annotations

from pathlib import Path

import pytest

from rtc_annotator.pipelines.base import VideoError
from rtc_annotator.pipelines.frames import iter_frames, pts_to_ms


def test_every_frame_has_its_presentation_time(make_video) -> None:
    video = make_video(colors=("red", "blue"), seconds_each=1.0, fps=25)
    frames = list(iter_frames(video))
    assert [f.pts_ms for f in frames] == [40 * i for i in range(50)]
    assert frames[0].image.shape == (120, 160, 3)
    # BGR: red is (0, 0, 255), blue (255, 0, 0), give or take the codec
    assert frames[0].image[60, 80, 2] > 200 and frames[0].image[60, 80, 0] < 60
    assert frames[-1].image[60, 80, 0] > 200 and frames[-1].image[60, 80, 2] < 60


def test_sampling_takes_first_frame_at_or_after_each_tick(make_video) -> None:
    video = make_video(colors=("red", "blue"), seconds_each=1.0, fps=25)
    assert [f.pts_ms for f in iter_frames(video, every_ms=300)] == [0, 320, 600, 920, 1200,
                                                                     1520, 1800]


def test_vfr_times_come_from_pts_not_frame_counts(vfr_video: Path) -> None:
    times = [f.pts_ms for f in iter_frames(vfr_video)]
    assert times[:26] == [40 * i for i in range(26)]  # 25 fps second
    assert times[25:36] == [1000 + 100 * i for i in range(11)]  # 10 fps second
    assert times[35] == 2000 and abs(times[36] - 2033) <= 1  # 30 fps
    # frame/fps would put frame 40 at 40 / 23.07 fps = 1734 ms; its real time is 2167 ms
    assert abs(times[40] - 2167) <= 1
    sampled = [f.pts_ms for f in iter_frames(vfr_video, every_ms=500)]
    assert sampled == [0, 520, 1000, 1500, 2000, 2500, 3000]  # 500 is no 25 fps pts


def test_scaling_keeps_aspect(make_video) -> None:
    video = make_video(colors=("red",), seconds_each=0.2, fps=25, size="320x240")
    frame = next(iter(iter_frames(video, max_width=100)))
    assert frame.image.shape == (75, 100, 3)
    assert (frame.width, frame.height) == (320, 240)


def test_not_a_video_is_a_clear_error(not_a_video: Path, tmp_path: Path) -> None:
    with pytest.raises(VideoError) as err:
        list(iter_frames(not_a_video))
    assert err.value.code == "VIDEO_ERROR"
    with pytest.raises(VideoError, match="not found"):
        list(iter_frames(tmp_path / "missing.mp4"))


def test_pts_to_ms_is_exact_rational() -> None:
    from fractions import Fraction

    assert pts_to_ms(1001, Fraction(1, 30000)) == 33
    assert pts_to_ms(90000 * 3600, Fraction(1, 90000)) == 3_600_000
    assert pts_to_ms(512, Fraction(1, 12800), origin=10_000) == 30
