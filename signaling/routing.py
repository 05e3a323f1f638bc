"""Routing policy: pure functions over worker snapshots (no I/O, no clock of its own).

Order (the room's policy decides only how strict storage is):

1. hard filters: online, not excluded, not draining, offers every pipeline, holds every model
   the job names, largest GPU >= min memory, a free slot; with a strict storage requirement
   also: mounts ``required_storage``;
   a request naming a ``worker`` (reattach) goes to that worker only, whatever its slots;
2. then prefer workers that mount ``required_storage``;
3. then most free slots, then most GPU memory, then fewest recent jobs, then name.

:func:`why_never` says which requirement no worker of the room meets at all (error, no queue).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rtc_annotator.protocol.signaling import Requirements, RoutingPolicy


class CandidateLike(Protocol):
    """What routing reads from a worker (the registry's entries provide it without copying)."""

    @property
    def name(self) -> str: ...
    @property
    def pipelines(self) -> frozenset[str]: ...
    @property
    def backends(self) -> frozenset[str]: ...
    @property
    def gpu_memory_mb(self) -> int: ...
    @property
    def free_slots(self) -> int: ...
    @property
    def recent_jobs(self) -> int: ...
    @property
    def draining(self) -> bool: ...
    @property
    def models(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class Candidate:
    """A plain snapshot of one worker (tests, tools)."""

    name: str
    pipelines: frozenset[str]
    backends: frozenset[str]
    gpu_memory_mb: int
    free_slots: int
    recent_jobs: int
    draining: bool = False
    models: frozenset[str] = frozenset()
    """``pipeline/name`` of the models it holds."""


@dataclass(frozen=True)
class Choice:
    """The outcome of :func:`choose`: a worker, or None when every match is busy."""

    worker: str | None
    storage_match: bool | None
    strict: bool
    candidates: int
    reason: str


def is_strict(req: Requirements, policy: RoutingPolicy) -> bool:
    """Whether only workers mounting ``required_storage`` may take this request."""
    if req.required_storage is None:
        return False
    return (req.strict or policy.storage == "strict"
            or req.required_storage in policy.strict_backends)


def capable(c: CandidateLike, req: Requirements, strict: bool) -> bool:
    """Could this worker ever take the request (ignoring slots and draining)?"""
    if c.name in req.exclude or (req.worker is not None and c.name != req.worker):
        return False
    if not set(req.pipelines) <= c.pipelines:
        return False
    if req.models and not req.model_keys() <= c.models:
        return False
    if req.min_gpu_memory_mb and c.gpu_memory_mb < req.min_gpu_memory_mb:
        return False
    return not (strict and req.required_storage not in c.backends)


def _key(c: CandidateLike, req: Requirements) -> tuple[int, int, int, int, str]:
    match = 0 if (req.required_storage is not None and req.required_storage in c.backends) else 1
    return (match, -c.free_slots, -c.gpu_memory_mb, c.recent_jobs, c.name)


def choose(workers: Iterable[CandidateLike], req: Requirements, policy: RoutingPolicy) -> Choice:
    """Pick the best worker that can take the request now (one pass, no sorting)."""
    strict = is_strict(req, policy)
    need = frozenset(req.pipelines)
    store = req.required_storage
    mem = req.min_gpu_memory_mb
    models = req.model_keys()
    best: CandidateLike | None = None
    best_key: tuple[int, int, int, int, str] | None = None
    count = 0
    if req.worker is not None:  # reattach: only that worker, slots and draining do not matter
        for c in workers:
            if c.name == req.worker and capable(c, req, strict):
                return Choice(c.name, None if store is None else store in c.backends, strict, 1,
                              f"the requested worker {c.name}")
        return Choice(None, None, strict, 0, f"worker {req.worker} is not online")
    excluded = req.exclude
    for c in workers:
        if excluded and c.name in excluded:
            continue
        free = c.free_slots
        if free <= 0 or c.draining or c.gpu_memory_mb < mem or not need <= c.pipelines:
            continue
        if models and not models <= c.models:
            continue
        has = store is not None and store in c.backends
        if strict and not has:
            continue
        count += 1
        k = (0 if has else 1, -free, -c.gpu_memory_mb, c.recent_jobs, c.name)
        if best_key is None or k < best_key:
            best, best_key = c, k
    if best is None:
        return Choice(None, None, strict, 0, "every matching worker is busy or draining")
    match = None if req.required_storage is None else req.required_storage in best.backends
    parts = []
    if req.required_storage is not None:
        parts.append(f"mounts {req.required_storage}" if match
                     else f"does not mount {req.required_storage} (preferred mode)")
    parts.append(f"{best.free_slots} free slot(s)")
    parts.append(f"{best.gpu_memory_mb} MiB GPU")
    parts.append(f"{best.recent_jobs} recent job(s)")
    return Choice(best.name, match, strict, count, ", ".join(parts))


def why_never(workers: Sequence[CandidateLike], req: Requirements, policy: RoutingPolicy,
              room: str) -> str | None:
    """None when some worker could take the request once free; else which requirement failed."""
    strict = is_strict(req, policy)
    if any(capable(c, req, strict) for c in workers):
        return None
    if req.worker is not None:
        if not any(c.name == req.worker for c in workers):
            return f"worker {req.worker!r} is not online in room {room!r}"
        return f"worker {req.worker!r} does not meet the other requirements"
    if not workers:
        return f"no worker is registered in room {room!r}"
    pool = [c for c in workers if c.name not in req.exclude]
    if not pool:
        return (f"no worker in room {room!r} other than {', '.join(req.exclude)} "
                "(excluded)")
    missing = [p for p in req.pipelines if not any(p in c.pipelines for c in pool)]
    if missing:
        return f"no worker in room {room!r} offers pipeline(s) {', '.join(missing)}"
    pool = [c for c in pool if set(req.pipelines) <= c.pipelines]
    if not pool:
        return (f"no single worker in room {room!r} offers all of "
                f"{', '.join(req.pipelines)}")
    for pipeline, model in req.models.items():
        key = f"{pipeline}/{model}"
        if not any(key in c.models for c in pool):
            held = sorted({m.split("/", 1)[1] for c in pool for m in c.models
                           if m.startswith(pipeline + "/")})
            return (f"no worker in room {room!r} with those pipelines holds model {model!r} for "
                    f"{pipeline} (held: {', '.join(held) or 'none'}); add it on a worker with "
                    f"`rtc-annotator models add PATH --pipeline {pipeline} --name {model}`")
    pool = [c for c in pool if req.model_keys() <= c.models]
    if not pool:
        return (f"no single worker in room {room!r} holds all of the models "
                f"{', '.join(sorted(req.model_keys()))}")
    if strict:
        pool = [c for c in pool if req.required_storage in c.backends]
        if not pool:
            return (f"no worker in room {room!r} with those pipelines mounts storage backend "
                    f"{req.required_storage!r} (strict storage routing)")
    return (f"no worker in room {room!r} that meets the other requirements has "
            f">= {req.min_gpu_memory_mb} MiB of GPU memory")
