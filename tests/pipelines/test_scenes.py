from __future__ import annotations

from pathlib import Path

import pytest

from rtc_annotator.pipelines.base import OptionsError, RunContext
from rtc_annotator.pipelines.scenes import ScenesOptions, ScenesPipeline, detect_scenes


def _bounds(scenes: list[dict]) -> list[tuple[int, int]]:
    return [(s["start_ms"], s["end_ms"]) for s in scenes]


def test_cuts_at_known_times(make_video) -> None:
    video = make_video(colors=("red", "blue", "green", "white"), seconds_each=1.0, fps=25)
    scenes = list(detect_scenes(video, ScenesOptions()))
    assert _bounds(scenes) == [(0, 1000), (1000, 2000), (2000, 3000), (3000, 4000)]
    assert [s["index"] for s in scenes] == [0, 1, 2, 3]
    assert scenes[0]["boundary_score"] is None
    assert all(s["boundary_score"] > 27.0 for s in scenes[1:])


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_vfr_cuts_within_one_frame(vfr_video: Path, detector: str) -> None:
    scenes = list(detect_scenes(vfr_video, ScenesOptions(detector=detector)))
    cuts = [s["start_ms"] for s in scenes[1:]]
    assert len(cuts) == 2
    # frame spacing around the cuts: 100 ms at 1000 (first 10 fps frame), 33 ms at 2000
    assert abs(cuts[0] - 1000) <= 100 and abs(cuts[1] - 2000) <= 33
    assert cuts == [1000, 2000]  # in fact exact: the first frame of each new scene
    assert abs(scenes[-1]["end_ms"] - 3500) <= 34


def test_min_scene_length_and_threshold(make_video) -> None:
    video = make_video(colors=("red", "blue", "red", "blue", "red"), seconds_each=0.4, fps=25)
    every = list(detect_scenes(video, ScenesOptions(min_scene_len_ms=0)))
    assert [s["start_ms"] for s in every] == [0, 400, 800, 1200, 1600]
    spaced = list(detect_scenes(video, ScenesOptions(min_scene_len_ms=1000)))
    assert len(spaced) < len(every)
    assert all(b["start_ms"] - a["start_ms"] >= 1000 for a, b in zip(spaced, spaced[1:],
                                                                        strict=False))
    none = list(detect_scenes(video, ScenesOptions(min_scene_len_ms=0, threshold=250)))
    assert _bounds(none) == [(0, 2000)]


def test_scenes_are_yielded_before_the_video_is_finished(make_video) -> None:
    video = make_video(colors=("red", "blue", "green"), seconds_each=1.0, fps=25)
    gen = detect_scenes(video, ScenesOptions())
    first = next(gen)
    assert (first["start_ms"], first["end_ms"]) == (0, 1000)
    frame_locals = gen.gi_frame.f_locals if gen.gi_frame else {}
    assert frame_locals.get("last_ms", 0) < 2000  # stopped right after the first cut
    gen.close()


def test_pipeline_outputs_and_options() -> None:
    pipeline = ScenesPipeline()
    with pytest.raises(OptionsError) as err:
        pipeline.parse_options({"treshold": 3})
    assert "threshold" in err.value.hint
    with pytest.raises(OptionsError):
        pipeline.parse_options({"detector": "magic"})
    assert pipeline.parse_options({"threshold": 12}).threshold == 12  # type: ignore[attr-defined]


def test_pipeline_run_wraps_payloads(make_video) -> None:
    video = make_video(colors=("red", "blue"), seconds_each=1.0, fps=25)
    pipeline = ScenesPipeline()
    outs = list(pipeline.run(video, pipeline.parse_options(None), RunContext("j")))
    assert [(o.artifact_type, o.span_start_ms, o.span_end_ms) for o in outs] == [
        ("scene", 0, 1000), ("scene", 1000, 2000)]
    assert set(outs[0].payload) == {"index", "start_ms", "end_ms", "boundary_score"}
