"""A generated lecture whose truth is known: slides at known times, speech at known times.

``make_lecture(dir)`` renders with ffmpeg (drawtext, DejaVu font) a video of slides, each with a
title, a body line and a page number; two consecutive slides differ only in their page number,
two others carry a moving coloured box (a region that changes on every sample); espeak-ng speaks
one sentence per slide, placed at known offsets. It returns the video path and the truth:
where each text is on screen and when each sentence is spoken. Used by scripts/bench/gate.py
and tests/pipelines/test_gate_real.py.
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"

SLIDES: tuple[tuple[str, str, str], ...] = (
    # title, body, spoken sentence
    ("Gradient Descent", "minimize the loss step by step", "Today we study gradient descent."),
    ("Learning Rate", "small steps are slow but stable", "The learning rate sets the step size."),
    ("Loss Surfaces", "valleys ridges and plateaus", "A loss surface has valleys and ridges."),
    ("Momentum", "keep moving in the same direction", "Momentum smooths the path downhill."),
    ("Stochastic Updates", "one minibatch at a time", "We update on one small batch at a time."),
    ("Stochastic Updates", "one minibatch at a time", "Noise in the batches can help us."),
    ("Convergence", "the loss stops changing", "Training converges when the loss is flat."),
    ("Live Demo", "watch the optimizer move", "Now look at the live demonstration."),
    ("Live Demo", "watch the optimizer move", "The red box follows the current weights."),
    ("Regularization", "weight decay keeps models small", "Weight decay keeps the model simple."),
    ("Early Stopping", "stop when validation gets worse", "Stop training when validation fails."),
    ("Summary", "descend carefully and check often", "That is all for today, thank you."),
)
MOVING = (7, 8)
"""Indices of the slides with a moving box."""


@dataclass(frozen=True)
class TextTruth:
    """One text on screen from ``start_ms`` to ``end_ms`` (consecutive equal slides merged)."""

    text: str
    start_ms: int
    end_ms: int


@dataclass
class Lecture:
    video: Path
    duration_ms: int
    slide_ms: int
    texts: list[TextTruth] = field(default_factory=list)
    speech: list[tuple[str, int]] = field(default_factory=list)
    """(sentence, start ms)."""


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'")


Slide = tuple[str, str, str]


def _truth(slide_ms: int, slides: tuple[Slide, ...]) -> list[TextTruth]:
    spans: list[TextTruth] = []
    n = len(slides)
    for i, (title, body, _) in enumerate(slides):
        start, end = i * slide_ms, (i + 1) * slide_ms
        for text in (title, body, f"{i + 1} / {n}"):
            prev = next((s for s in spans if s.text == text and s.end_ms == start), None)
            if prev is not None:
                spans[spans.index(prev)] = TextTruth(text, prev.start_ms, end)
            else:
                spans.append(TextTruth(text, start, end))
    return spans


def make_lecture(workdir: Path, *, slide_s: float = 10.5, width: int = 640, height: int = 360,
                 speech: bool = True, slides: tuple[Slide, ...] = SLIDES,
                 moving: tuple[int, ...] = MOVING) -> Lecture:
    """Render the lecture into ``workdir`` (ffmpeg, and espeak-ng for the speech)."""
    workdir.mkdir(parents=True, exist_ok=True)
    slide_ms = round(slide_s * 1000)
    n = len(slides)
    duration = slide_s * n
    filters = []
    for i, (title, body, _) in enumerate(slides):
        a, b = i * slide_s, (i + 1) * slide_s
        on = f"enable='gte(t,{a})*lt(t,{b})'"
        filters.append(f"drawtext=fontfile={FONT_BOLD}:text='{_escape(title)}':fontsize=40:"
                       f"fontcolor=0x202020:x=40:y=50:{on}")
        filters.append(f"drawtext=fontfile={FONT}:text='{_escape(body)}':fontsize=28:"
                       f"fontcolor=0x303030:x=40:y=150:{on}")
        filters.append(f"drawtext=fontfile={FONT}:text='{i + 1} / {n}':fontsize=22:"
                       f"fontcolor=0x404040:x=w-tw-30:y=h-th-20:{on}")
    video = workdir / "lecture.mp4"
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi",
           "-i", f"color=c=0xf4f4f0:s={width}x{height}:d={duration}:r=25",
           "-f", "lavfi", "-i", f"color=c=0xcc3333:s=80x50:d={duration}:r=25"]
    lecture = Lecture(video, round(duration * 1000), slide_ms, _truth(slide_ms, slides))
    audio_inputs: list[str] = []
    mix = ""
    if speech:
        espeak = shutil.which("espeak-ng")
        if espeak is None:
            raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
        parts = []
        for i, (_, _, sentence) in enumerate(slides):
            wav = workdir / f"s{i:02d}.wav"
            subprocess.run([espeak, "-s", "150", "-w", str(wav), sentence], check=True,
                           capture_output=True)
            offset = i * slide_ms + 1500
            lecture.speech.append((sentence, offset))
            audio_inputs += ["-i", str(wav)]
            parts.append(f"[{i + 2}:a]adelay={offset}|{offset}[a{i}]")
        mix = (";".join(parts) + ";" + "".join(f"[a{i}]" for i in range(n))
               + f"amix=inputs={n}:normalize=0:duration=longest,apad=whole_dur={duration}[aout]")
    graph = "[0:v]" + ",".join(filters) + "[slides]"
    # a box that moves on the "moving" slides: overlay evaluates its position on every frame
    boxes = "+".join(f"between(t,{i * slide_s},{(i + 1) * slide_s - 0.001})" for i in moving)
    if boxes:
        graph += (f";[1:v]null[box];[slides][box]overlay=x='40+mod(t*90\\,{width - 160})':"
                  f"y=230:enable='{boxes}'[vout]")
    else:
        graph += ";[slides]null[vout]"
    if mix:
        graph += ";" + mix
    cmd += audio_inputs + ["-filter_complex", graph, "-map", "[vout]"]
    if mix:
        cmd += ["-map", "[aout]", "-c:a", "aac", "-b:a", "64k"]
    cmd += ["-t", str(duration), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast",
            str(video)]
    subprocess.run(cmd, check=True, capture_output=True)
    return lecture


def normalize(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def check_spans(truth: list[TextTruth], found: list[dict[str, object]], *,
                sample_ms: int, min_ratio: float = 0.8) -> list[str]:
    """Problems (empty when every truth text was found with its span within one sample interval
    of the truth). ``found``: ``ocr.text`` artifacts as dicts with text, start_ms, end_ms."""
    problems = []
    for t in truth:
        want = normalize(t.text)
        best: tuple[float, dict[str, object]] | None = None
        for f in found:
            start, end = int(f["start_ms"]), int(f["end_ms"])  # type: ignore[call-overload]
            if end <= t.start_ms or start >= t.end_ms:
                continue
            ratio = difflib.SequenceMatcher(None, want, normalize(str(f["text"]))).ratio()
            if best is None or ratio > best[0]:
                best = (ratio, f)
        if best is None or best[0] < min_ratio:
            problems.append(f"{t.text!r} ({t.start_ms}-{t.end_ms} ms) not found"
                            + (f" (best {best[1]['text']!r}, {best[0]:.2f})" if best else ""))
            continue
        f = best[1]
        start, end = int(f["start_ms"]), int(f["end_ms"])  # type: ignore[call-overload]
        if not (t.start_ms <= start <= t.start_ms + sample_ms
                and t.end_ms <= end <= t.end_ms + sample_ms):
            problems.append(f"{t.text!r}: span {start}-{end} ms, truth {t.start_ms}-{t.end_ms} "
                            f"(allowed: start and end up to {sample_ms} ms later)")
    return problems
