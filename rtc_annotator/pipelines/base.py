"""The one small interface every pipeline implements, and the errors pipelines raise.

A :class:`Pipeline` has a ``name``, a ``version``, the ``artifact_types`` it produces and the
Python modules it ``requires``. :meth:`Pipeline.probe` says whether this machine can run it
(dependency importable, weights present in ``[worker] models_dir``, enough GPU memory) and why
not. :meth:`Pipeline.run` yields :class:`PipelineOutput` objects *as they are produced*.

Heavy libraries (faster-whisper, ultralytics, easyocr, torch) are imported only inside functions,
so this package imports on a machine that has none of them.

Errors (all under :class:`~rtc_annotator.errors.RtcAnnotatorError`)::

    PipelineError            a pipeline failed while running                  PIPELINE_ERROR
    +-- UnknownPipeline      no pipeline by that name                         UNKNOWN_PIPELINE
    +-- PipelineUnavailable  dependency missing / not enough GPU memory       PIPELINE_NOT_AVAILABLE
    +-- ModelNotAvailable    the model asked for is not held here             MODEL_NOT_AVAILABLE
    +-- ModelInvalid         the model's files are damaged or of another kind MODEL_INVALID
    +-- OptionsError         bad pipeline options or profile                  OPTIONS_ERROR
    +-- VideoError           the input cannot be opened or decoded            VIDEO_ERROR
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from rtc_annotator.config import MODEL_PROFILES, Settings
from rtc_annotator.errors import RtcAnnotatorError


class PipelineError(RtcAnnotatorError):
    """A pipeline failed while running."""

    code = "PIPELINE_ERROR"


class UnknownPipeline(PipelineError):
    """No pipeline has that name."""

    code = "UNKNOWN_PIPELINE"


class PipelineUnavailable(PipelineError):
    """The pipeline cannot run on this machine (dependency missing, GPU too small)."""

    code = "PIPELINE_NOT_AVAILABLE"


class ModelNotAvailable(PipelineError):
    """The weights the profile needs are not in ``[worker] models_dir``."""

    code = "MODEL_NOT_AVAILABLE"


class ModelInvalid(PipelineError):
    """The model's files are there but cannot be used (damaged, truncated, not a detector)."""

    code = "MODEL_INVALID"


class OptionsError(PipelineError):
    """Pipeline options or the model profile are invalid."""

    code = "OPTIONS_ERROR"


class VideoError(PipelineError):
    """The video cannot be opened or decoded."""

    code = "VIDEO_ERROR"
    default_hint = "check that the file is a complete video that ffmpeg can play"


@dataclass(frozen=True)
class Availability:
    """Whether a pipeline can run here, and if not, why."""

    ok: bool
    """True when the pipeline can run on this machine."""
    reason: str = ""
    """Why it cannot run (empty when ``ok``), or a note such as the profiles present."""
    profiles: tuple[str, ...] = ()
    """Model profiles whose weights are present (every profile for model-free pipelines)."""
    models: tuple[dict[str, Any], ...] = ()
    """Usable models of a model pipeline: pipeline, name, kind, sha256, classes (detectors)."""


@dataclass
class PipelineOutput:
    """One artifact payload as a pipeline produced it (the envelope is added later)."""

    artifact_type: str
    """Payload schema name, e.g. ``scene``."""
    schema_version: int
    """Version of that payload schema."""
    span_start_ms: int
    """Start of the span the artifact covers, ms from the media's presentation timestamps."""
    span_end_ms: int
    """End of that span (>= start)."""
    payload: dict[str, Any]
    """The payload, exactly the keys of the schema."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PipelineOutput:
        return cls(
            artifact_type=str(data["artifact_type"]),
            schema_version=int(data["schema_version"]),
            span_start_ms=int(data["span_start_ms"]),
            span_end_ms=int(data["span_end_ms"]),
            payload=dict(data["payload"]),
        )


@dataclass
class RunContext:
    """What a running pipeline may know about its job and its machine."""

    job_id: str
    """Job id, for logs."""
    profile: str = "balanced"
    """Model profile: fast, balanced or high_quality."""
    models_dir: Path | None = None
    """``[worker] models_dir``: where weights are read from. Nothing is downloaded."""
    device: str = "cpu"
    """``cpu`` or ``cuda`` (the child sees its one GPU as device 0)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form values a caller passes through (tests, tuning)."""
    catalog: Any = None
    """The machine's :class:`~rtc_annotator.pipelines.models.Catalog` (None: the models of
    ``models_dir`` alone)."""
    cache_dir: Path | None = None
    """A writable directory for the libraries' own settings and caches (never models_dir,
    which may be read-only)."""
    threads: int | None = None
    """CPU threads the model libraries may use (None: their default)."""
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-pipeline figures for the job summary (``stats[pipeline name]``), e.g. how many model
    calls a change gate saved. Each pipeline writes only its own key."""
    frame_source: Any = None
    """The job's :class:`~rtc_annotator.pipelines.frames.SharedDecoder`, set by the job child
    when several pipelines decode the same video (None: each decodes on its own)."""

    def frames(self, video: Path, *, every_ms: int | None = None, max_width: int | None = None,
               pixel_format: str = "bgr24") -> Iterator[Any]:
        """Decoded frames of ``video`` (see :func:`~rtc_annotator.pipelines.frames.iter_frames`
        for the arguments), shared with the job's other frame-based pipelines when the job
        runs several. Pipelines that read frames use this and set ``uses_frames``."""
        if self.frame_source is not None:
            it: Iterator[Any] = self.frame_source.frames(
                video, every_ms=every_ms, max_width=max_width, pixel_format=pixel_format)
            return it
        from rtc_annotator.pipelines.frames import iter_frames

        return iter_frames(video, every_ms=every_ms, max_width=max_width,
                           pixel_format=pixel_format)


class PipelineOptions(BaseModel):
    """Base of every pipeline's options model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def module_importable(module: str) -> str:
    """Whether ``module`` is installed; "" when it is, else the reason.

    Looked up with :func:`importlib.util.find_spec`, never imported: importing torch or
    ultralytics changes the process (thread settings, banners) and every job started after."""
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        return f"cannot import {module}: {type(exc).__name__}: {exc}".replace("\n", " ")
    return "" if found is not None else f"cannot import {module}: it is not installed"


class Pipeline(ABC):
    """One annotation pipeline. Subclasses set the class attributes and implement run()."""

    name: ClassVar[str]
    """Pipeline name used in jobs and config, e.g. ``scenes``."""
    version: ClassVar[str]
    """Producer version recorded with every artifact."""
    artifact_types: ClassVar[tuple[str, ...]]
    """Artifact types it yields."""
    requirements: ClassVar[tuple[str, ...]] = ()
    """Python modules that must import for it to run."""
    options_model: ClassVar[type[PipelineOptions]] = PipelineOptions
    """Pydantic model of its options."""
    uses_frames: ClassVar[bool] = False
    """True when run() reads decoded frames through ``context.frames`` (once per run): the
    job child then decodes the video once for all such pipelines of a job."""

    def parse_options(self, raw: Mapping[str, Any] | None) -> PipelineOptions:
        """Validate this pipeline's options; raise :class:`OptionsError` with a hint."""
        try:
            return self.options_model.model_validate(dict(raw or {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "(options)"
            known = ", ".join(self.options_model.model_fields) or "none"
            raise OptionsError(
                f"{self.name} option {key}: {err['msg']}",
                hint=f"options of {self.name}: {known}",
            ) from None

    def probe(self, settings: Settings) -> Availability:
        """Can this machine run the pipeline? Default: every requirement imports."""
        for module in self.requirements:
            reason = module_importable(module)
            if reason:
                return Availability(False, reason)
        return Availability(True, "", MODEL_PROFILES)

    def prepare(self, options: PipelineOptions, context: RunContext) -> None:  # noqa: B027
        """Load models and import heavy libraries before the job's pipelines start.

        A job's pipelines run side by side in threads; the job calls ``prepare`` of each, one
        after the other in its main thread, first. So two threads never import one library at
        once (a second thread can see a half-initialised module), and process-wide settings a
        library changes while loading (ultralytics sets ``OMP_NUM_THREADS``, OpenCV's and
        torch's threads) are put back before any pipeline runs. Its time counts in the
        pipeline's seconds. Default: nothing."""

    @abstractmethod
    def run(
        self, video: Path, options: PipelineOptions, context: RunContext
    ) -> Iterator[PipelineOutput]:
        """Yield outputs as they are produced."""


def check_profile(profile: str) -> str:
    if profile not in MODEL_PROFILES:
        raise OptionsError(
            f"unknown model profile {profile!r}", hint=f"use one of {', '.join(MODEL_PROFILES)}"
        )
    return profile
