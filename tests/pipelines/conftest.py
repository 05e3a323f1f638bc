"""Videos for the pipeline and worker tests, made with ffmpeg."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

# (colour, fps, seconds): cuts at 1000 ms and 2000 ms, frame spacing 40, 100, then ~33 ms
VFR_SEGMENTS = (("red", 25, 1.0), ("blue", 10, 1.0), ("green", 30, 1.5))


def build_vfr(ffmpeg: str, out: Path) -> Path:
    """Concatenate segments with different frame rates, keeping every timestamp (VFR mp4)."""
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    for color, fps, secs in VFR_SEGMENTS:
        args += ["-f", "lavfi", "-i", f"color=c={color}:s=160x120:r={fps}:d={secs}"]
    n = len(VFR_SEGMENTS)
    chains = ";".join(f"[{i}:v]settb=1/1000[s{i}]" for i in range(n))
    concat = "".join(f"[s{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    args += ["-filter_complex", f"{chains};{concat}", "-map", "[v]", "-fps_mode", "passthrough",
             "-video_track_timescale", "1000", "-c:v", "libx264", "-preset", "ultrafast",
             "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(args, check=True)
    return out


@pytest.fixture(scope="session")
def vfr_video(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vfr(ffmpeg, tmp_path_factory.mktemp("vfr") / "vfr.mp4")


@pytest.fixture(scope="session")
def long_video(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 s of 320x240: several seconds of work for the scenes pipeline."""
    out = tmp_path_factory.mktemp("long") / "long.mp4"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=red:s=320x240:r=25:d=300", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


@pytest.fixture()
def not_a_video(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n")
    return path


@pytest.fixture(scope="session")
def audio_video(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s red picture with a 440 Hz tone (make_video(audio=True) places -map wrongly)."""
    out = tmp_path_factory.mktemp("audio") / "tone.mp4"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "color=c=red:s=160x120:r=25:d=1",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=1",
                    "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(out)], check=True)
    return out


@pytest.fixture(autouse=True)
def _thread_env_kept() -> Iterator[None]:
    """A test that imports ultralytics in this process (it sets OMP_NUM_THREADS=1) must not
    slow down every job process started after it."""
    before = os.environ.get("OMP_NUM_THREADS")
    yield
    if before is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = before


@pytest.fixture(scope="session")
def real(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The weight packages, a read-only models dir filled by `models add --link`, and the
    cache dir its fingerprints are read into (shared by the real-model tests: read once)."""
    from tests.real_models import find_weights, make_models_dir

    weights = find_weights()
    root = tmp_path_factory.mktemp("real")
    cache = root / "cache"
    return SimpleNamespace(weights=weights, root=root, cache=cache,
                           models_dir=make_models_dir(root, weights, cache))
