"""Annotation pipelines: one module per pipeline behind :class:`~.base.Pipeline`.

See docs/pipelines.md. Heavy dependencies are imported inside functions only.
"""

from rtc_annotator.pipelines.base import (
    Availability,
    Pipeline,
    PipelineError,
    PipelineOutput,
    RunContext,
)
from rtc_annotator.pipelines.registry import DEFAULT_REGISTRY, Registry, get_pipeline

__all__ = [
    "DEFAULT_REGISTRY",
    "Availability",
    "Pipeline",
    "PipelineError",
    "PipelineOutput",
    "Registry",
    "RunContext",
    "get_pipeline",
]
