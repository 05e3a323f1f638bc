"""What this worker advertises when it registers: pipelines it can run, the models it holds
(name, kind, sha256, class names of detectors), GPUs, slots, storage."""

from __future__ import annotations

from typing import Any

from rtc_annotator import __version__
from rtc_annotator.config import Settings
from rtc_annotator.pipelines.gpu import detect_gpus
from rtc_annotator.pipelines.registry import DEFAULT_REGISTRY, Registry
from rtc_annotator.worker.slots import slot_count


def worker_capabilities(settings: Settings, registry: Registry | None = None) -> dict[str, Any]:
    """The capability map of the REGISTER message. Storage backends carry name and type only,
    never their local base path."""
    reg = registry or DEFAULT_REGISTRY
    statuses = reg.statuses(settings)
    storage = settings.storage_config()
    return {
        "name": settings.worker.name,
        "storage_backends": [
            {"name": name, "type": storage.backends[name].type}
            for name in storage.list_backends()
        ],
        "pipelines": [s.name for s in statuses if s.ok],
        "unavailable": {s.name: s.reason for s in statuses if not s.ok},
        "models": [
            {k: m[k] for k in ("pipeline", "name", "kind", "sha256", "classes") if k in m}
            for s in statuses if s.ok for m in s.models
        ],
        "gpus": [{"name": g.name, "memory_mb": g.memory_mb} for g in detect_gpus()],
        "job_slots": slot_count(settings),
        "load": 0,
        "version": __version__,
    }
