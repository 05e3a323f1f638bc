"""Benchmark: the `scenes` pipeline through the worker code path vs plain PySceneDetect.

Generates one 60 s 1280x720 30 fps H.264 video (four 15 s segments of different ffmpeg test
sources, so there are real cuts), then in the same run:

* ours: ``JobRunner.submit(..., ["scenes"])`` -- child process spawn, PyAV decode thread,
  ContentDetector on presentation timestamps, outputs streamed back over the pipe;
* plain: ``scenedetect.detect(path, ContentDetector())`` (its default OpenCV backend).

Prints both figures; the last line is JSON {"video_s", "ours_fps", "plain_fps", "ratio"}
(ratio = ours_fps / plain_fps; target >= 0.9).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCES = ("testsrc2", "smptehdbars", "rgbtestsrc", "testsrc")
SECONDS_EACH = 15
FPS = 30


def make_video(out: Path) -> None:
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    for src in SOURCES:
        args += ["-f", "lavfi", "-i", f"{src}=s=1280x720:r={FPS}:d={SECONDS_EACH}"]
    n = len(SOURCES)
    filt = "".join(f"[{i}:v]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    args += ["-filter_complex", filt, "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast",
             "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(args, check=True)


async def ours(video: Path) -> tuple[float, int]:
    from rtc_annotator.config import Settings
    from rtc_annotator.worker.runner import JobRunner

    t0 = time.perf_counter()
    async with JobRunner(Settings(), slots=1) as runner:
        handle = await runner.submit("bench", video, ["scenes"], "fast", {})
        scenes = sum([len(b) async for b in handle.outputs()])
        result = await handle.wait()
    if result.status.value != "completed":
        raise SystemExit(f"scenes job failed: {result.error}")
    return time.perf_counter() - t0, scenes


def plain(video: Path) -> tuple[float, int]:
    from scenedetect import ContentDetector, detect

    t0 = time.perf_counter()
    scenes = detect(str(video), ContentDetector())
    return time.perf_counter() - t0, max(1, len(scenes))


def main() -> None:
    from rtc_annotator.pipelines.frames import iter_frames
    from rtc_annotator.pipelines.metadata import read_metadata

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "bench720p.mp4"
        make_video(video)
        meta = read_metadata(video)
        frames = sum(1 for _ in iter_frames(video, max_width=64))
        video_s = meta["duration_ms"] / 1000
        plain(video)  # warm the page cache and imports for both
        ours_s, ours_n = asyncio.run(ours(video))
        plain_s, plain_n = plain(video)
    ours_fps, plain_fps = frames / ours_s, frames / plain_s
    print(f"video: {video_s:.1f} s, {frames} frames, 1280x720", file=sys.stderr)
    print(f"ours (JobRunner, child process): {ours_s:.2f} s, {ours_fps:.0f} fps, "
          f"{ours_n} scenes", file=sys.stderr)
    print(f"plain scenedetect.detect: {plain_s:.2f} s, {plain_fps:.0f} fps, {plain_n} scenes",
          file=sys.stderr)
    print(json.dumps({"video_s": round(video_s, 3), "ours_fps": round(ours_fps, 1),
                      "plain_fps": round(plain_fps, 1), "ratio": round(ours_fps / plain_fps, 3)}))


if __name__ == "__main__":
    main()
