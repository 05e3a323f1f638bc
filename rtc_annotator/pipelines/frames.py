"""Shared video decoding and frame sampling (PyAV), used by scenes, objects and ocr.

Every frame carries its presentation time in integer milliseconds, computed from the stream's
``pts * time_base`` minus the container's start time: never ``frame_index / fps``, so the times
are right for variable-frame-rate video too.

Decoding (with the codec's own frame threads) and pixel conversion/scaling (swscale) run in a
background thread that feeds a small bounded queue, so decoding overlaps with the consumer's
work (scene detection, a model) as PySceneDetect's own decode thread does.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from rtc_annotator.pipelines.base import VideoError

_END = object()


@dataclass
class Frame:
    """One decoded frame."""

    pts_ms: int
    """Presentation time in ms from the start of the media."""
    pts: int
    """Raw presentation timestamp in ``time_base`` units."""
    time_base: Fraction
    """Time base of ``pts``."""
    image: np.ndarray
    """Pixels, HxWx3 uint8 in the requested format (bgr24 or rgb24)."""
    width: int
    """Width of the source frame (before any scaling)."""
    height: int
    """Height of the source frame (before any scaling)."""


def open_video(video: Path) -> Any:
    """Open ``video`` with PyAV; raise :class:`VideoError` when it has no decodable video."""
    import av

    if not video.is_file():
        raise VideoError(f"video file not found: {video.name}", hint="check the path")
    try:
        container = av.open(str(video))
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot open {video.name} as a video: {exc}") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{video.name} has no video stream")
    return container


def origin_us(container: Any) -> int:
    """Container start time in microseconds (0 when unknown): the zero of every ms time."""
    start = container.start_time
    return int(start) if start is not None and start > 0 else 0


def pts_to_ms(pts: int, time_base: Fraction, origin: int = 0) -> int:
    """``pts`` in ``time_base`` units to integer ms, relative to ``origin`` microseconds."""
    us = Fraction(pts) * time_base * 1_000_000 - origin
    return max(0, round(us / 1000))


def _scaled_size(width: int, height: int, max_width: int | None) -> tuple[int, int]:
    if not max_width or width <= max_width:
        return width, height
    scale = max_width / width
    return max_width, max(2, round(height * scale))


def iter_frames(
    video: Path,
    *,
    every_ms: int | None = None,
    max_width: int | None = None,
    pixel_format: str = "bgr24",
    prefetch: int = 8,
) -> Iterator[Frame]:
    """Yield decoded frames of the first video stream in presentation order.

    ``every_ms``: sample the first frame at or after 0, every_ms, 2*every_ms, ... (None: every
    frame). ``max_width``: scale frames down to at most that width (aspect kept). Raises
    :class:`VideoError` for files that cannot be opened or decoded.
    """
    if every_ms is not None and every_ms <= 0:
        raise ValueError("every_ms must be positive")
    container = open_video(video)
    out: queue.Queue[Any] = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def decode() -> None:
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            origin = origin_us(container)
            next_ms = 0
            size: tuple[int, int] | None = None
            for frame in container.decode(stream):
                if stop.is_set():
                    return
                if frame.pts is None or frame.time_base is None:
                    continue
                tb = Fraction(frame.time_base.numerator, frame.time_base.denominator)
                ms = pts_to_ms(frame.pts, tb, origin)
                if every_ms is not None:
                    if ms < next_ms:
                        continue
                    next_ms = (ms // every_ms + 1) * every_ms
                if size is None:
                    size = _scaled_size(frame.width, frame.height, max_width)
                image = frame.to_ndarray(format=pixel_format, width=size[0], height=size[1])
                item = Frame(ms, int(frame.pts), tb, image, frame.width, frame.height)
                if not put(item):
                    return
            put(_END)
        except Exception as exc:
            put(exc)
        finally:
            container.close()

    thread = threading.Thread(target=decode, name=f"decode-{video.name}", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                if isinstance(item, VideoError):
                    raise item
                raise VideoError(f"cannot decode {video.name}: {item}") from None
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
