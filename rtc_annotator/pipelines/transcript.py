"""``transcript`` pipeline: faster-whisper with VAD, word timestamps and language detection.

The model is a CTranslate2 Whisper folder named by the ``model`` option or the profile (see
:mod:`.models`: ``<models_dir>/faster-whisper/<size>`` for the built-in names, any folder added
with ``models add`` or ``[models.transcript.<name>]``); it is loaded with
``local_files_only=True`` so nothing is downloaded. The compute type comes from the profile (GPU
precision on CUDA, int8 on CPU). faster-whisper decodes lazily: each segment is
converted and yielded as soon as it is decoded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from rtc_annotator.config import Settings
from rtc_annotator.logs import get_logger
from rtc_annotator.pipelines.base import (
    Availability,
    Pipeline,
    PipelineOptions,
    PipelineOutput,
    RunContext,
    VideoError,
)
from rtc_annotator.pipelines.frames import open_video
from rtc_annotator.pipelines.models import ModelOptions, load_failed, model_for
from rtc_annotator.pipelines.profiles import model_spec, probe_models

SCHEMA_VERSION = 1
log = get_logger(__name__)
_BEAM = {"fast": 1, "balanced": 5, "high_quality": 5}


class TranscriptOptions(ModelOptions):
    """Options of the ``transcript`` pipeline."""

    language: str | None = Field(default=None, description="ISO code; None: detect it.")
    beam_size: int | None = Field(default=None, ge=1, le=20, description="Default from profile.")
    vad_filter: bool = Field(default=True, description="Skip silence with Silero VAD.")
    min_silence_ms: int = Field(default=500, ge=0, description="VAD: silence that splits speech.")
    batched: bool = Field(
        default=False, description="faster-whisper's batched inference: speech chunks found by "
        "VAD decoded several at a time. Faster on a GPU; on a CPU it is not. Same timestamps "
        "contract (segments and words in ms from the media start).")
    batch_size: int = Field(default=8, ge=1, le=64, description="Chunks per batch (batched).")

    @model_validator(mode="after")
    def _batched_needs_vad(self) -> TranscriptOptions:
        if self.batched and not self.vad_filter:
            raise ValueError("batched inference needs vad_filter (it cuts the audio into "
                             "speech chunks with VAD); set vad_filter true or batched false")
        return self


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def segment_payload(segment: Any, language: str) -> dict[str, Any]:
    """Convert a faster-whisper ``Segment`` (with ``Word`` list) to a transcript.segment."""
    words = [
        {
            "word": str(w.word).strip(),
            "start_ms": _ms(w.start),
            "end_ms": max(_ms(w.start), _ms(w.end)),
            "probability": min(1.0, max(0.0, float(w.probability))),
        }
        for w in (segment.words or [])
        if str(w.word).strip()
    ]
    start = _ms(segment.start)
    return {
        "text": str(segment.text).strip(),
        "language": language,
        "start_ms": start,
        "end_ms": max(start, _ms(segment.end)),
        "confidence": min(1.0, max(0.0, math.exp(float(segment.avg_logprob)))),
        "words": words,
    }


def has_audio(video: Path) -> bool:
    import av

    try:
        container = av.open(str(video))
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot open {video.name}: {exc}") from None
    try:
        return bool(container.streams.audio)
    finally:
        container.close()


class TranscriptPipeline(Pipeline):
    name: ClassVar[str] = "transcript"
    version: ClassVar[str] = "1.0"
    artifact_types: ClassVar[tuple[str, ...]] = ("transcript.segment",)
    requirements: ClassVar[tuple[str, ...]] = ("faster_whisper",)
    options_model: ClassVar[type[PipelineOptions]] = TranscriptOptions

    def probe(self, settings: Settings) -> Availability:
        return probe_models(self.name, self.requirements, settings)

    def prepare(self, options: PipelineOptions, context: RunContext) -> None:
        """Import faster-whisper (CTranslate2) before the job's threads start."""
        import faster_whisper  # noqa: F401

    def run(
        self, video: Path, options: PipelineOptions, context: RunContext
    ) -> Iterator[PipelineOutput]:
        assert isinstance(options, TranscriptOptions)
        entry = model_for(context, self.name, options.model)
        spec = model_spec(self.name, context.profile)
        assert spec is not None
        open_video(video).close()  # a clear VIDEO_ERROR for non-videos
        if not has_audio(video):
            log.info("no audio stream, no transcript", ctx={"job": context.job_id})
            return
        from faster_whisper import WhisperModel

        try:
            model = WhisperModel(
                str(entry.path), device=context.device,
                compute_type=spec.precision(context.device), local_files_only=True,
                cpu_threads=context.threads or 0,
            )
        except Exception as exc:
            raise load_failed(entry, exc, "the folder must hold a complete CTranslate2 Whisper "
                              "model (model.bin, config.json, tokenizer.json, vocabulary); "
                              "copy it again or convert it with ct2-transformers-converter"
                              ) from None
        common: dict[str, Any] = {
            "language": options.language,
            "beam_size": options.beam_size or _BEAM[context.profile],
            "vad_filter": options.vad_filter,
            "vad_parameters": {"min_silence_duration_ms": options.min_silence_ms},
            "word_timestamps": True,
        }
        if options.batched:
            from faster_whisper import BatchedInferencePipeline

            segments, info = BatchedInferencePipeline(model=model).transcribe(
                str(video), batch_size=options.batch_size, **common)
        else:
            segments, info = model.transcribe(str(video), **common)
        language = options.language or str(info.language)
        log.info("language", ctx={"job": context.job_id, "language": language,
                                  "p": round(float(info.language_probability), 3)})
        for segment in segments:
            payload = segment_payload(segment, language)
            if payload["text"]:
                yield PipelineOutput(
                    "transcript.segment", SCHEMA_VERSION, payload["start_ms"], payload["end_ms"],
                    payload,
                )
