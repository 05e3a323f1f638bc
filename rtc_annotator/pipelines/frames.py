"""Shared video decoding and frame sampling (PyAV), used by scenes, objects and ocr.

Every frame carries its presentation time in integer milliseconds, computed from the stream's
``pts * time_base`` minus the container's start time: never ``frame_index / fps``, so the times
are right for variable-frame-rate video too.

Decoding (with the codec's own frame threads) and pixel conversion/scaling (swscale) run in a
background thread that feeds a small bounded queue, so decoding overlaps with the consumer's
work (scene detection, a model) as PySceneDetect's own decode thread does.

:class:`SharedDecoder` decodes a video once for all the frame-based pipelines of one job
(scenes, objects, ocr, plugins that set ``uses_frames``), each getting its own sampling.
"""

from __future__ import annotations

import contextlib
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


def _convert(frame: Any, pixel_format: str, size: tuple[int, int]) -> np.ndarray:
    """Frame -> HxWx3 array. For yuv420p (almost every H.264/HEVC file) the planes are taken
    as they are and scaled + colour-converted with OpenCV, several times faster than swscale's
    packed-RGB path; other formats go through PyAV's reformat."""
    w, h = frame.width, frame.height
    if (frame.format.name == "yuv420p" and pixel_format in ("bgr24", "rgb24")
            and w % 2 == 0 and h % 2 == 0):
        import cv2

        planes = frame.to_ndarray()  # (h * 3 / 2, w): Y, then U and V at quarter size
        y = planes[:h]
        u = planes[h:h + h // 4].reshape(h // 2, w // 2)
        v = planes[h + h // 4:].reshape(h // 2, w // 2)
        tw, th = size
        if tw % 2 or th % 4:  # not an I420 shape: upsample chroma and convert as YUV 4:4:4
            full = cv2.merge([
                cv2.resize(y, (tw, th), interpolation=cv2.INTER_AREA),
                cv2.resize(u, (tw, th), interpolation=cv2.INTER_LINEAR),
                cv2.resize(v, (tw, th), interpolation=cv2.INTER_LINEAR),
            ])
            code444 = cv2.COLOR_YUV2BGR if pixel_format == "bgr24" else cv2.COLOR_YUV2RGB
            out444: np.ndarray = cv2.cvtColor(full, code444)
            return out444
        if (tw, th) != (w, h):
            y = cv2.resize(y, (tw, th), interpolation=cv2.INTER_AREA)
            u = cv2.resize(u, (tw // 2, th // 2), interpolation=cv2.INTER_AREA)
            v = cv2.resize(v, (tw // 2, th // 2), interpolation=cv2.INTER_AREA)
        i420 = np.concatenate([y, u.reshape(-1, tw), v.reshape(-1, tw)])
        code = cv2.COLOR_YUV2BGR_I420 if pixel_format == "bgr24" else cv2.COLOR_YUV2RGB_I420
        out: np.ndarray = cv2.cvtColor(i420, code)
        return out
    arr: np.ndarray = frame.to_ndarray(format=pixel_format, width=size[0], height=size[1])
    return arr


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
                image = _convert(frame, pixel_format, size)
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


@dataclass(frozen=True)
class FrameRequest:
    """What one consumer of a :class:`SharedDecoder` wants (the arguments of iter_frames)."""

    every_ms: int | None = None
    """Sample interval in ms (None: every frame)."""
    max_width: int | None = None
    """Scale down to at most this width."""
    pixel_format: str = "bgr24"
    """bgr24 or rgb24."""


class _Consumer:
    def __init__(self, request: FrameRequest, capacity: int) -> None:
        self.request = request
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self.next_ms = 0
        self.size: tuple[int, int] | None = None
        self.active = True

    def wants(self, ms: int) -> bool:
        every = self.request.every_ms
        if every is None:
            return True
        if ms < self.next_ms:
            return False
        self.next_ms = (ms // every + 1) * every
        return True


class SharedDecoder:
    """Decode one video once for the frame-based pipelines of a job, each in its own thread.

    The job child makes one per job with the number of pipelines that declared
    ``uses_frames``. Each of them asks through :meth:`RunContext.frames
    <rtc_annotator.pipelines.base.RunContext.frames>` with its own sampling, size and pixel
    format; decoding starts once every expected consumer has asked (or :meth:`withdraw` -n, as
    a pipeline that failed before asking does), and each decoded frame is converted once per
    distinct (size, format) and queued to every consumer that samples it. Each consumer has its
    own bounded queue, so memory stays bounded and the decoder runs at the pace of the slowest.
    A request for another video, or a second request from a pipeline, decodes on its own.
    """

    def __init__(self, video: Path, expected: int, *, frame_budget_bytes: int = 64 << 20) -> None:
        self.video = video
        self.expected = expected
        self.frame_budget_bytes = frame_budget_bytes
        self._cond = threading.Condition()
        self._consumers: list[_Consumer] = []
        self._withdrawn = 0
        self._started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.decoded = 0
        """Frames decoded so far (for tests and benchmarks)."""

    def frames(self, video: Path, *, every_ms: int | None = None, max_width: int | None = None,
               pixel_format: str = "bgr24") -> Iterator[Frame]:
        """The frames one consumer asked for (same meaning as :func:`iter_frames`)."""
        if every_ms is not None and every_ms <= 0:
            raise ValueError("every_ms must be positive")
        request = FrameRequest(every_ms, max_width, pixel_format)
        if Path(video) != self.video:
            return iter_frames(video, every_ms=every_ms, max_width=max_width,
                               pixel_format=pixel_format)
        return self._consume(request)

    def withdraw(self) -> None:
        """One expected consumer will not ask (it ended or failed first)."""
        with self._cond:
            self._withdrawn += 1
            self._maybe_start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _maybe_start(self) -> None:
        if self._started or not self._consumers:
            return
        if len(self._consumers) + self._withdrawn < self.expected:
            return
        self._started = True
        self._thread = threading.Thread(target=self._decode, name=f"shared-{self.video.name}",
                                        daemon=True)
        self._thread.start()
        self._cond.notify_all()

    def _capacity(self, request: FrameRequest) -> int:
        # small frames (scene analysis at 256 px) may run far ahead; full frames a few
        width = request.max_width or 1920
        est = width * (width * 9 // 16) * 3
        return max(8, min(512, self.frame_budget_bytes // max(est, 1)))

    def _consume(self, request: FrameRequest) -> Iterator[Frame]:
        consumer = _Consumer(request, self._capacity(request))
        with self._cond:
            late = self._started
            if not late:
                self._consumers.append(consumer)
                self._maybe_start()
                while not self._started:
                    self._cond.wait()
        if late:  # decoding began without this consumer: decode on its own
            yield from iter_frames(self.video, every_ms=request.every_ms,
                                   max_width=request.max_width,
                                   pixel_format=request.pixel_format)
            return
        try:
            while True:
                item = consumer.queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, VideoError):
                        raise item
                    raise VideoError(f"cannot decode {self.video.name}: {item}") from None
                yield item
        finally:
            consumer.active = False
            with contextlib.suppress(queue.Empty):  # unblock a decoder waiting on this queue
                while True:
                    consumer.queue.get_nowait()

    def _put(self, consumer: _Consumer, item: Any) -> None:
        while consumer.active and not self._stop.is_set():
            try:
                consumer.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _decode(self) -> None:
        consumers = list(self._consumers)
        container = None
        try:
            container = open_video(self.video)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            origin = origin_us(container)
            for frame in container.decode(stream):
                if self._stop.is_set() or not any(c.active for c in consumers):
                    return
                if frame.pts is None or frame.time_base is None:
                    continue
                self.decoded += 1
                tb = Fraction(frame.time_base.numerator, frame.time_base.denominator)
                ms = pts_to_ms(frame.pts, tb, origin)
                converted: dict[tuple[tuple[int, int], str], np.ndarray] = {}
                for c in consumers:
                    if not c.active or not c.wants(ms):
                        continue
                    if c.size is None:
                        c.size = _scaled_size(frame.width, frame.height, c.request.max_width)
                    key = (c.size, c.request.pixel_format)
                    image = converted.get(key)
                    if image is None:
                        image = converted[key] = _convert(frame, c.request.pixel_format, c.size)
                    else:  # each consumer owns its array: a model may write into it
                        image = image.copy()
                    self._put(c, Frame(ms, int(frame.pts), tb, image, frame.width,
                                       frame.height))
            for c in consumers:
                self._put(c, _END)
        except Exception as exc:
            for c in consumers:
                self._put(c, exc)
        finally:
            if container is not None:
                container.close()
