"""Pipeline registry: name -> pipeline class (by import path), and what this machine can run.

Entries are ``"module:Class"`` strings so that a job's child process (spawned, fresh
interpreter) rebuilds the same pipelines from the same registry; tests and embedders can pass a
:class:`Registry` with extra entries. The default registry holds the built-ins plus the pipelines
installed packages declare in the ``rtc_annotator.pipelines`` entry-point group (see
:mod:`rtc_annotator.pipelines.plugins`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from rtc_annotator.config import Settings
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.pipelines.base import Availability, Pipeline, UnknownPipeline
from rtc_annotator.pipelines.plugins import load_pipeline, plugin_origin, plugin_pipelines

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
        if entries is None:
            entries = {**BUILTIN, **plugin_pipelines(BUILTIN)}
        self.entries: dict[str, str] = dict(entries)

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
        return load_pipeline(name, path)

    def statuses(
        self, settings: Settings, names: Iterable[str] | None = None
    ) -> list[PipelineStatus]:
        """Probe each pipeline (all by default): availability with a reason for each."""
        offered = settings.worker.pipelines
        rows = []
        for name in names if names is not None else self.entries:
            try:
                pipeline = self.get(name)
            except RtcAnnotatorError as exc:  # a plugin that does not load: say why, go on
                rows.append(PipelineStatus(name, "?", (), False, exc.one_line(), ()))
                continue
            if offered is not None and name not in offered:
                avail = Availability(False, "not offered: not listed in [worker] pipelines")
            else:
                avail = _probe(pipeline, name, self.entries[name], settings)
            rows.append(
                PipelineStatus(
                    name, pipeline.version, pipeline.artifact_types, avail.ok, avail.reason,
                    avail.profiles, avail.models,
                )
            )
        return rows


def _probe(pipeline: Pipeline, name: str, target: str, settings: Settings) -> Availability:
    """A pipeline's probe; for a plugin, a probe that raises means unavailable (with why),
    and an available plugin's note says which package it comes from."""
    entry = plugin_origin(target)
    if entry is None:
        return pipeline.probe(settings)
    try:
        avail = pipeline.probe(settings)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        return Availability(False, f"probe of pipeline {name!r} (plugin from {entry.origin}) "
                                   f"raised {reason} -- {entry.reinstall_hint}")
    note = f"plugin from {entry.origin}"
    return replace(avail, reason=f"{avail.reason}; {note}" if avail.reason else note)


DEFAULT_REGISTRY = Registry()


def get_pipeline(name: str) -> Pipeline:
    return DEFAULT_REGISTRY.get(name)


def list_pipelines(settings: Settings) -> list[PipelineStatus]:
    return DEFAULT_REGISTRY.statuses(settings)
