"""Change gate: call a model only on sampled frames whose picture changed since the last read.

Frame-based models (OCR above all, objects on still content) re-read pictures that have not
changed: at one sample per second an hour of lecture is 3,600 OCR calls while the slides change
perhaps sixty times. :class:`ChangeGate` compares each sampled frame with **the last frame the
model read** (not with the previous sample, so a slow drift adds up and is read in the end) and
answers one of:

``skip``
    No cell of the picture changed: reuse the last results (spans simply stay open).
``band``
    Only some rows changed (a page number, a moving inset): read the horizontal band that holds
    them, across the full width so no text line is cut, grown to cover every earlier text box it
    touches. Results outside the band are kept.
``full``
    Much changed (a new slide, camera motion, noise), or there is nothing read yet: read it all.

The measure: the frame in grey, shrunk with area averaging to 160 cells across (each cell 4x4
pixels of a 640x360 frame, 8x8 of 720p); the absolute grey difference of each cell against the
reference is compared with ``threshold`` (grey levels, 0-255). Area averaging smooths compression
noise, and a changed glyph moves its cells' means by far more. Measured on the H.264 lecture of
``tests/lecture.py`` (640x360, libx264 veryfast): between samples of an unchanged slide the
largest cell difference was 0 to 12 (the encoder refining the picture in the second or two
after a cut); a page number that changed from "8 / 12" to "9 / 12" (22 px) moved its cells by
88 to 96, a new slide by over 200. The default threshold of 16 sits between the two; the
benchmark (``scripts/bench/gate.py``) checks that every slide's text is still found with its
span within one sample interval. When unsure, it reads: ``max_skip_ms`` forces a full read after
that long without one (0: never forced).

The comparison costs about 0.2 ms per 640x360 frame on this development machine's CPU, against
1-7 s for an easyocr call on the same frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import numpy as np

from rtc_annotator.pipelines.base import OptionsError

Decision = Literal["skip", "band", "full"]
T = TypeVar("T")


@dataclass(frozen=True)
class GateSettings:
    """How the gate decides; built from a pipeline's options."""

    threshold: float = 16.0
    """Mean absolute grey difference of one cell (0-255) above which the cell changed."""
    cols: int = 160
    """Width of the grey picture the frames are compared at (cells across)."""
    max_band_fraction: float = 0.5
    """A change taller than this fraction of the frame is read whole."""
    max_skip_ms: int = 0
    """Force a full read after this long without one (0: never)."""
    bands: bool = True
    """Read only the changed band when the change is small (False: skip or full only)."""

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 255:
            raise OptionsError(f"gate threshold {self.threshold} is outside (0, 255)",
                               hint="use a grey-level difference such as 16 (the default)")
        if not 16 <= self.cols <= 1920:
            raise OptionsError(f"gate cols {self.cols} is outside 16-1920",
                               hint="use 160 (the default)")
        if not 0 < self.max_band_fraction <= 1:
            raise OptionsError(f"gate max_band_fraction {self.max_band_fraction} is outside "
                               "(0, 1]", hint="use 0.5 (the default)")
        if self.max_skip_ms < 0:
            raise OptionsError(f"gate max_skip_ms {self.max_skip_ms} is negative",
                               hint="use 0 (never force a read) or a positive number of ms")


@dataclass(frozen=True)
class Verdict:
    """What to do with one sampled frame."""

    decision: Decision
    """skip, band or full."""
    top: int = 0
    """First pixel row to read (band and full)."""
    bottom: int = 0
    """One past the last pixel row to read (band and full)."""
    changed_cells: int = 0
    """How many cells changed against the reference."""


@dataclass
class GateStats:
    """Counts for the job summary."""

    frames: int = 0
    """Sampled frames seen."""
    full_reads: int = 0
    """Frames read whole."""
    band_reads: int = 0
    """Frames of which only a band was read."""
    skipped: int = 0
    """Frames not read at all (model calls saved)."""
    compare_s: float = 0.0
    """Seconds spent comparing frames."""

    def as_dict(self) -> dict[str, float | int]:
        return {"frames": self.frames, "full_reads": self.full_reads,
                "band_reads": self.band_reads, "calls_saved": self.skipped,
                "compare_s": round(self.compare_s, 4)}


class ChangeGate:
    """Decide per sampled frame whether the model must read it (see the module docstring)."""

    def __init__(self, settings: GateSettings | None = None) -> None:
        self.settings = settings or GateSettings()
        self.stats = GateStats()
        self._ref: np.ndarray | None = None
        self._ref_ms = 0

    def signature(self, image: np.ndarray) -> np.ndarray:
        """The frame as a small grey picture (float32), averaged over areas."""
        import cv2

        h, w = image.shape[:2]
        cols = min(self.settings.cols, w)
        rows = max(1, round(h * cols / w))
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        small: np.ndarray = cv2.resize(grey, (cols, rows), interpolation=cv2.INTER_AREA)
        return small.astype(np.float32)

    def decide(self, image: np.ndarray, pts_ms: int,
               boxes: Sequence[tuple[float, float]] = ()) -> Verdict:
        """Compare ``image`` (HxW grey or HxWx3 BGR) with the last frame read. ``boxes`` are the
        vertical extents ``(top, bottom)``, as fractions of the height, of what the last reads
        found, so a band is grown to cover each box it touches. The caller must then read what
        the verdict says and call :meth:`read`."""
        import time

        t0 = time.perf_counter()
        self.stats.frames += 1
        sig = self.signature(image)
        h = image.shape[0]
        verdict = self._verdict(sig, pts_ms, boxes, h)
        self.stats.compare_s += time.perf_counter() - t0
        if verdict.decision == "skip":
            self.stats.skipped += 1
        else:
            if verdict.decision == "full":
                self.stats.full_reads += 1
            else:
                self.stats.band_reads += 1
            self._ref, self._ref_ms = sig, pts_ms
        return verdict

    def _verdict(self, sig: np.ndarray, pts_ms: int, boxes: Sequence[tuple[float, float]],
                 height: int) -> Verdict:
        s = self.settings
        ref = self._ref
        if ref is None or ref.shape != sig.shape:
            return Verdict("full", 0, height)
        if s.max_skip_ms and pts_ms - self._ref_ms >= s.max_skip_ms:
            return Verdict("full", 0, height)
        changed = np.abs(sig - ref) > s.threshold
        count = int(changed.sum())
        if count == 0:
            return Verdict("skip", changed_cells=0)
        rows = np.flatnonzero(changed.any(axis=1))
        n = sig.shape[0]
        top_f, bottom_f = rows[0] / n, (rows[-1] + 1) / n
        if not s.bands or bottom_f - top_f > s.max_band_fraction:
            return Verdict("full", 0, height, count)
        # one cell of margin, then grow over every earlier box the band touches, until stable
        top_f, bottom_f = max(0.0, top_f - 1 / n), min(1.0, bottom_f + 1 / n)
        grown = True
        while grown:
            grown = False
            for b_top, b_bottom in boxes:
                if b_bottom > top_f and b_top < bottom_f and (b_top < top_f or b_bottom > bottom_f):
                    top_f, bottom_f = min(top_f, b_top), max(bottom_f, b_bottom)
                    grown = True
        if bottom_f - top_f > s.max_band_fraction:
            return Verdict("full", 0, height, count)
        top = max(0, int(np.floor(top_f * height)))
        bottom = min(height, int(np.ceil(bottom_f * height)))
        return Verdict("band", top, bottom, count)


class GatedReader(Generic[T]):
    """Wrap a model's read of one frame with a :class:`ChangeGate`.

    ``read(image, top)`` runs the model on ``image`` (the whole frame, or the band starting at
    pixel row ``top``) and returns items; ``extent(item)`` gives an item's vertical extent as
    fractions of the frame height. :meth:`items` returns what the frame holds: the last items
    again when it is skipped, the band's new items plus the earlier items outside the band, or
    a fresh full read. Without a gate every frame is read whole.
    """

    def __init__(self, read: Callable[[np.ndarray, int], list[T]],
                 extent: Callable[[T], tuple[float, float]],
                 gate: ChangeGate | None = None) -> None:
        self.read = read
        self.extent = extent
        self.gate = gate
        self.current: list[T] = []

    def items(self, image: np.ndarray, pts_ms: int) -> list[T]:
        if self.gate is None:
            self.current = self.read(image, 0)
            return self.current
        verdict = self.gate.decide(image, pts_ms, [self.extent(i) for i in self.current])
        if verdict.decision == "full":
            self.current = self.read(image, 0)
        elif verdict.decision == "band":
            h = image.shape[0]
            top_f, bottom_f = verdict.top / h, verdict.bottom / h
            kept = [i for i in self.current
                    if self.extent(i)[1] <= top_f or self.extent(i)[0] >= bottom_f]
            self.current = kept + self.read(image[verdict.top:verdict.bottom], verdict.top)
        return self.current
