"""``ocr`` pipeline: easyocr on sampled frames; identical text on consecutive samples merged.

A change gate (:mod:`rtc_annotator.pipelines.gate`, on by default) reads a sampled frame only
where its picture changed since the last frame read: unchanged frames keep the current text
spans open without a model call, a frame where only some rows changed (a page number, a moving
inset) has just that band read. Spans are as exact as without the gate: a change is seen on the
first sample after it, as a read would see it.

The reader loads its detector and recognizer from the folder of the model named by the ``model``
option or the profile (see :mod:`.models`; the built-in ``english_g2`` is
``<models_dir>/easyocr``), with ``download_enabled=False``; easyocr's ``user_network`` dir is
in the job's writable cache dir, never in models_dir (which may be read-only).
:class:`TextSpanMerger` turns per-sample detections into spans: a
text seen on consecutive samples is one ``ocr.text`` artifact from the first sample it appeared
on to the first sample it was gone (or the end of the video), yielded when it closes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from rtc_annotator.config import Settings
from rtc_annotator.logs import get_logger
from rtc_annotator.pipelines.base import (
    Availability,
    Pipeline,
    PipelineOptions,
    PipelineOutput,
    RunContext,
)
from rtc_annotator.pipelines.frames import open_video
from rtc_annotator.pipelines.gate import ChangeGate, GatedReader, GateSettings
from rtc_annotator.pipelines.models import ModelOptions, load_failed, model_for
from rtc_annotator.pipelines.profiles import probe_models

SCHEMA_VERSION = 1
_log = get_logger(__name__)


class OcrOptions(ModelOptions):
    """Options of the ``ocr`` pipeline."""

    sample_every_ms: int = Field(default=1000, ge=1, description="One frame per this many ms.")
    languages: list[str] | None = Field(
        default=None, description="easyocr languages; default: the model's.")
    min_confidence: float = Field(default=0.3, ge=0, le=1, description="Drop weaker text.")
    gate: bool = Field(
        default=True, description="Read a sampled frame only where the picture changed since "
        "the last frame read (off: read every sample whole).")
    gate_threshold: float = Field(
        default=16.0, gt=0, lt=255, description="Grey-level change (mean of a cell of the "
        "160-wide grey frame) that counts as a change.")
    gate_bands: bool = Field(
        default=True, description="Read only the changed rows when the change is small.")
    gate_max_skip_ms: int = Field(
        default=0, ge=0, description="Force a whole read after this long without one (0: never).")

    def gate_settings(self) -> GateSettings | None:
        if not self.gate:
            return None
        return GateSettings(threshold=self.gate_threshold, bands=self.gate_bands,
                            max_skip_ms=self.gate_max_skip_ms)


@dataclass
class TextItem:
    """One piece of text found on one sample."""

    text: str
    confidence: float
    polygon: list[list[float]]


def readtext_items(results: Iterable[Any], width: int, height: int,
                   top: int = 0) -> list[TextItem]:
    """Convert easyocr ``readtext`` output ``[(box, text, conf), ...]`` (pixel corners) of a
    frame ``width`` x ``height``, or of its band starting at pixel row ``top``."""
    items = []
    for box, text, conf in results:
        clean = " ".join(str(text).split())
        if not clean:
            continue
        polygon = [
            [min(1.0, max(0.0, float(x) / width)), min(1.0, max(0.0, (float(y) + top) / height))]
            for x, y in box
        ]
        items.append(TextItem(clean, min(1.0, max(0.0, float(conf))), polygon))
    return items


def vertical_extent(item: TextItem) -> tuple[float, float]:
    """Top and bottom of an item's polygon, as fractions of the frame height."""
    ys = [p[1] for p in item.polygon]
    return (min(ys), max(ys)) if ys else (0.0, 0.0)


@dataclass
class _Open:
    start_ms: int
    item: TextItem


class TextSpanMerger:
    """Merge identical text on consecutive samples into one span."""

    def __init__(self, languages: list[str]) -> None:
        self.languages = list(languages)
        self._open: dict[str, _Open] = {}

    def _payload(self, span: _Open, end_ms: int) -> PipelineOutput:
        item = span.item
        payload = {"text": item.text, "confidence": item.confidence, "polygon": item.polygon,
                   "languages": self.languages}
        return PipelineOutput("ocr.text", SCHEMA_VERSION, span.start_ms,
                              max(end_ms, span.start_ms), payload)

    def sample(self, pts_ms: int, items: Iterable[TextItem]) -> list[PipelineOutput]:
        """Feed one sample; return the spans that closed (text gone on this sample)."""
        seen: dict[str, TextItem] = {}
        for item in items:
            if item.text not in seen or item.confidence > seen[item.text].confidence:
                seen[item.text] = item
        closed = [self._payload(s, pts_ms) for t, s in self._open.items() if t not in seen]
        self._open = {t: s for t, s in self._open.items() if t in seen}
        for text, item in seen.items():
            span = self._open.get(text)
            if span is None:
                self._open[text] = _Open(pts_ms, item)
            elif item.confidence > span.item.confidence:
                span.item = item
        return sorted(closed, key=lambda o: (o.span_start_ms, o.payload["text"]))

    def finish(self, end_ms: int) -> list[PipelineOutput]:
        """Close every open span at ``end_ms``."""
        closed = [self._payload(s, end_ms) for s in self._open.values()]
        self._open = {}
        return sorted(closed, key=lambda o: (o.span_start_ms, o.payload["text"]))


class OcrPipeline(Pipeline):
    name: ClassVar[str] = "ocr"
    version: ClassVar[str] = "1.0"
    artifact_types: ClassVar[tuple[str, ...]] = ("ocr.text",)
    requirements: ClassVar[tuple[str, ...]] = ("torch", "easyocr")
    options_model: ClassVar[type[PipelineOptions]] = OcrOptions
    uses_frames: ClassVar[bool] = True

    def probe(self, settings: Settings) -> Availability:
        return probe_models(self.name, self.requirements, settings)

    _reader: Any = None

    def prepare(self, options: PipelineOptions, context: RunContext) -> None:
        """Load the detector and recognizer (see :meth:`Pipeline.prepare`)."""
        assert isinstance(options, OcrOptions)
        entry = model_for(context, self.name, options.model)
        languages = list(options.languages or entry.languages)
        cache = (context.cache_dir or Path(tempfile.gettempdir()) / "rtc-annotator") / "easyocr"
        (cache / "user_network").mkdir(parents=True, exist_ok=True)
        import easyocr

        try:
            reader = easyocr.Reader(
                languages, gpu=context.device == "cuda",
                model_storage_directory=str(entry.path),
                user_network_directory=str(cache / "user_network"), download_enabled=False,
                detect_network=entry.detector, recog_network=entry.recognizer, verbose=False,
            )
        except Exception as exc:
            raise load_failed(entry, exc, f"the folder must hold easyocr's {entry.detector} "
                              f"detector and {entry.recognizer}.pth, complete and readable "
                              f"for languages {','.join(languages)}") from None
        self._reader = (reader, languages)

    def run(
        self, video: Path, options: PipelineOptions, context: RunContext
    ) -> Iterator[PipelineOutput]:
        assert isinstance(options, OcrOptions)
        if self._reader is None:
            self.prepare(options, context)
        reader, languages = self._reader
        container = open_video(video)
        duration_ms = round(container.duration / 1000) if container.duration else 0
        container.close()
        merger = TextSpanMerger(languages)
        settings = options.gate_settings()
        gate = ChangeGate(settings) if settings is not None else None
        size: list[int] = [0, 0]

        def read(image: Any, top: int) -> list[TextItem]:
            results = reader.readtext(image, detail=1)
            return [i for i in readtext_items(results, size[0], size[1], top)
                    if i.confidence >= options.min_confidence]

        gated = GatedReader(read, vertical_extent, gate)
        last_ms = 0
        # easyocr takes arrays as BGR (its grey image is cv2.COLOR_BGR2GRAY of them)
        for frame in context.frames(video, every_ms=options.sample_every_ms):
            size[1], size[0] = frame.image.shape[:2]
            items = gated.items(frame.image, frame.pts_ms)
            yield from merger.sample(frame.pts_ms, items)
            last_ms = frame.pts_ms
        yield from merger.finish(max(duration_ms, last_ms))
        if gate is not None:
            context.stats[self.name] = {"gate": gate.stats.as_dict()}
            _log.info("ocr gate", ctx=gate.stats.as_dict())
