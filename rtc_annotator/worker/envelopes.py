"""From pipeline outputs to artifact envelopes: run ids, config hashes, ordinals.

One :class:`EnvelopeBuilder` per job, used by the networked worker and by local ``annotate``
alike, so both produce the same ids: run id ``<job_id>-<pipeline>``, artifact ids derived from
(asset, run, type, ordinal, payload) by :func:`~rtc_annotator.artifacts.envelope.make_envelope`.
Clients compute the same run ids with :func:`run_id_for` to keep their ``runs`` rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rtc_annotator.artifacts.envelope import ArtifactEnvelope, make_envelope
from rtc_annotator.pipelines.base import PipelineOutput, PipelineUnavailable
from rtc_annotator.pipelines.registry import DEFAULT_REGISTRY, Registry
from rtc_annotator.transport.filetransfer import sha256_file

__all__ = ["EnvelopeBuilder", "config_hash", "run_id_for", "sha256_file"]


def run_id_for(job_id: str, pipeline: str) -> str:
    return f"{job_id}-{pipeline}"


def config_hash(pipeline: str, profile: str, options: Mapping[str, Any], version: str) -> str:
    text = json.dumps(
        {"pipeline": pipeline, "profile": profile, "options": dict(options), "version": version},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class EnvelopeBuilder:
    """Wraps a job's :class:`PipelineOutput` s into validated envelopes."""

    asset_id: str
    job_id: str
    pipelines: list[str]
    profile: str
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    registry: Registry = DEFAULT_REGISTRY
    run_ids: dict[str, str] = field(init=False)
    versions: dict[str, str] = field(init=False)
    hashes: dict[str, str] = field(init=False)
    _by_type: dict[str, str] = field(init=False)
    _ordinals: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.run_ids = {p: run_id_for(self.job_id, p) for p in self.pipelines}
        self.versions = {}
        self._by_type = {}
        for name in self.pipelines:
            try:
                pipe = self.registry.get(name)
            except PipelineUnavailable:  # a plugin that does not load yields nothing
                self.versions[name] = "unavailable"
                continue
            self.versions[name] = pipe.version
            for kind in pipe.artifact_types:
                self._by_type.setdefault(kind, name)
        self.hashes = {
            n: config_hash(n, self.profile, self.options.get(n, {}), self.versions[n])
            for n in self.pipelines
        }
        self._ordinals = dict.fromkeys(self.pipelines, 0)

    def pipeline_of(self, artifact_type: str) -> str:
        return self._by_type[artifact_type]

    def build(self, outputs: Iterable[PipelineOutput]) -> list[ArtifactEnvelope]:
        envelopes = []
        for out in outputs:
            name = self._by_type[out.artifact_type]
            envelopes.append(
                make_envelope(
                    asset_id=self.asset_id,
                    artifact_type=out.artifact_type,
                    schema_version=out.schema_version,
                    span_start_ms=out.span_start_ms,
                    span_end_ms=out.span_end_ms,
                    payload=out.payload,
                    producer=name,
                    producer_version=self.versions[name],
                    model_profile=self.profile,
                    config_hash=self.hashes[name],
                    input_hash=self.asset_id,
                    run_id=self.run_ids[name],
                    ordinal=self._ordinals[name],
                )
            )
            self._ordinals[name] += 1
        return envelopes
