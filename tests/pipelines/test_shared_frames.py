"""SharedDecoder: one decode for several frame-based pipelines, each with its own sampling."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtc_annotator.pipelines.base import VideoError
from rtc_annotator.pipelines.frames import SharedDecoder, iter_frames


def _consume(decoder: SharedDecoder, video: Path, out: dict[str, Any], key: str,
             stop_after: int | None = None, **kw: Any) -> threading.Thread:
    def run() -> None:
        frames = []
        try:
            for frame in decoder.frames(video, **kw):
                frames.append(frame)
                if stop_after is not None and len(frames) >= stop_after:
                    break
        except Exception as exc:
            out[key + "-error"] = exc
        finally:
            decoder.withdraw()
        out[key] = frames

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _same(a: list[Any], b: list[Any]) -> None:
    assert [f.pts_ms for f in a] == [f.pts_ms for f in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))


def test_each_consumer_gets_what_it_would_decode_alone_from_one_decode(vfr_video: Path) -> None:
    requests = {"scenes": {"max_width": 64}, "sampled": {"every_ms": 500},
                "rgb": {"every_ms": 500, "pixel_format": "rgb24"}}
    decoder = SharedDecoder(vfr_video, expected=len(requests))
    out: dict[str, Any] = {}
    threads = [_consume(decoder, vfr_video, out, k, **kw) for k, kw in requests.items()]
    for t in threads:
        t.join(30)
    decoder.close()
    alone = {k: list(iter_frames(vfr_video, **kw)) for k, kw in requests.items()}
    for key in requests:
        _same(out[key], alone[key])
    assert decoder.decoded == len(alone["scenes"])  # every frame decoded exactly once
    # two consumers asking for the same size and format get equal arrays, not the same one
    assert out["sampled"][0].image is not alone["sampled"][0].image
    assert out["rgb"][0].image[0, 0].tolist() == out["sampled"][0].image[0, 0, ::-1].tolist()


def test_a_pipeline_that_never_asks_does_not_hold_up_the_others(vfr_video: Path) -> None:
    decoder = SharedDecoder(vfr_video, expected=2)
    out: dict[str, Any] = {}
    thread = _consume(decoder, vfr_video, out, "a", every_ms=1000)
    decoder.withdraw()  # the second frame-based pipeline failed before reading frames
    thread.join(30)
    assert [f.pts_ms for f in out["a"]] == [0, 1000, 2000, 3000]


def test_a_consumer_that_stops_early_releases_the_decoder(vfr_video: Path) -> None:
    decoder = SharedDecoder(vfr_video, expected=2)
    out: dict[str, Any] = {}
    early = _consume(decoder, vfr_video, out, "early", stop_after=2)
    full = _consume(decoder, vfr_video, out, "full")
    early.join(30)
    full.join(30)
    assert len(out["early"]) == 2
    _same(out["full"], list(iter_frames(vfr_video)))


def test_late_or_other_requests_decode_on_their_own(vfr_video: Path, make_video) -> None:
    decoder = SharedDecoder(vfr_video, expected=1)
    out: dict[str, Any] = {}
    _consume(decoder, vfr_video, out, "first", every_ms=1000).join(30)
    # decoding already ran: a second request still gets every frame it asks for
    _same(list(decoder.frames(vfr_video, every_ms=1000)), out["first"])
    other = make_video(colors=("red",), seconds_each=1.0)
    assert len(list(decoder.frames(other))) == 25
    decoder.close()


def test_decode_errors_reach_every_consumer(not_a_video: Path) -> None:
    decoder = SharedDecoder(not_a_video, expected=2)
    out: dict[str, Any] = {}
    threads = [_consume(decoder, not_a_video, out, k) for k in ("a", "b")]
    for t in threads:
        t.join(30)
    for key in ("a", "b"):
        assert isinstance(out[key + "-error"], VideoError)
        assert "notes.mp4" in str(out[key + "-error"])
    with pytest.raises(ValueError):
        decoder.frames(not_a_video, every_ms=0)
