"""Pipeline registry: name -> pipeline class (by import path), and what this machine can run.

Entries are ``"module:Class"`` strings so that a job's child process (spawned, fresh
interpreter) rebuilds the same pipelines from the same registry; tests and embedders can pass a
:class:`Registry` with extra entries.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rtc_annotator.config import Settings
from rtc_annotator.pipelines.base import Availability, Pipeline, UnknownPipeline

BUILTIN: dict[str, str] = {
    "metadata": "rtc_annotator.pipelines.metadata:MetadataPipeline",
    "scenes": "rtc_annotator.pipelines.scenes:ScenesPipeline",
    "transcript": "rtc_annotator.pipelines.transcript:TranscriptPipeline",
    "objects": "rtc_annotator.pipelines.objects:ObjectsPipeline",
    "ocr": "rtc_annotator.pipelines.ocr:OcrPipeline",
}


@dataclass(frozen=True)
class PipelineStatus:
    """One row of ``pipelines list``."""

    name: str
    """Pipeline name."""
    version: str
    """Pipeline version."""
    artifact_types: tuple[str, ...]
    """Artifact types it produces."""
    ok: bool
    """Whether this machine can run it."""
    reason: str
    """Why not (or a note)."""
    profiles: tuple[str, ...]
    """Profiles whose weights are present."""
    models: tuple[dict[str, Any], ...] = ()
    """Usable models (model pipelines): pipeline, name, kind, sha256, classes."""


class Registry:
    """Maps pipeline names to pipeline classes given as ``module:Class`` paths."""

    def __init__(self, entries: Mapping[str, str] | None = None) -> None:
        self.entries: dict[str, str] = dict(BUILTIN if entries is None else entries)

    def with_entries(self, extra: Mapping[str, str]) -> Registry:
        return Registry({**self.entries, **extra})

    def names(self) -> list[str]:
        return list(self.entries)

    def get(self, name: str) -> Pipeline:
        """Instantiate the pipeline ``name``; raise :class:`UnknownPipeline` if there is none."""
        path = self.entries.get(name)
        if path is None:
            raise UnknownPipeline(
                f"unknown pipeline {name!r}", hint=f"known pipelines: {', '.join(self.entries)}"
            )
        module, _, attr = path.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        pipeline = cls()
        if not isinstance(pipeline, Pipeline):
            raise TypeError(f"{path} is not a Pipeline")
        return pipeline

    def statuses(
        self, settings: Settings, names: Iterable[str] | None = None
    ) -> list[PipelineStatus]:
        """Probe each pipeline (all by default): availability with a reason for each."""
        offered = settings.worker.pipelines
        rows = []
        for name in names if names is not None else self.entries:
            pipeline = self.get(name)
            if offered is not None and name not in offered:
                avail = Availability(False, "not offered: not listed in [worker] pipelines")
            else:
                avail = pipeline.probe(settings)
            rows.append(
                PipelineStatus(
                    name, pipeline.version, pipeline.artifact_types, avail.ok, avail.reason,
                    avail.profiles, avail.models,
                )
            )
        return rows


DEFAULT_REGISTRY = Registry()


def get_pipeline(name: str) -> Pipeline:
    return DEFAULT_REGISTRY.get(name)


def list_pipelines(settings: Settings) -> list[PipelineStatus]:
    return DEFAULT_REGISTRY.statuses(settings)
