"""Worker registry: who is online in each room, with what capabilities, and how busy.

A worker's identity is its name inside its room. Registering the same name again replaces the
previous entry and hands back the old connection so the server can close it (no ghost entries).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rtc_annotator.protocol.signaling import WorkerCapabilities, WorkerInfo


@dataclass(eq=False)
class WorkerEntry:
    """One registered worker; also what routing reads (:class:`signaling.routing.CandidateLike`).
    """

    room: str
    caps: WorkerCapabilities
    conn: Any
    """The connection it registered on (a :class:`signaling.hub.Conn`)."""
    online_since: float
    sessions: set[str] = field(default_factory=set)
    """Ids of the sessions holding one of its slots."""
    recent: deque[float] = field(default_factory=deque)
    """Times jobs were routed to it (pruned to the policy window by :meth:`prune`)."""
    draining: bool = False
    """Admin stopped routing to it (mirrors the room's drained set)."""
    name: str = ""
    pipelines: frozenset[str] = frozenset()
    backends: frozenset[str] = frozenset()
    gpu_memory_mb: int = 0
    models: frozenset[str] = frozenset()
    """``pipeline/name`` of the models it holds."""
    free_slots: int = 0
    """job_slots - max(load, sessions); kept current by :meth:`refresh` (routing reads it)."""

    def __post_init__(self) -> None:
        self.name = self.caps.name
        self.pipelines = frozenset(self.caps.pipelines)
        self.backends = frozenset(self.caps.backend_names())
        self.gpu_memory_mb = self.caps.max_gpu_memory_mb()
        self.models = frozenset(self.caps.model_keys())
        self.refresh()

    def refresh(self) -> None:
        """Recompute free slots after sessions or load changed."""
        self.free_slots = max(0, self.caps.job_slots - self.busy())

    def busy(self) -> int:
        return max(self.caps.load, len(self.sessions))

    def add_session(self, session_id: str) -> None:
        self.sessions.add(session_id)
        self.refresh()

    def drop_session(self, session_id: str) -> None:
        self.sessions.discard(session_id)
        self.refresh()

    def set_load(self, load: int) -> None:
        self.caps = self.caps.model_copy(update={"load": load})
        self.refresh()

    @property
    def recent_jobs(self) -> int:
        return len(self.recent)

    def prune(self, now: float, window_s: float) -> None:
        while self.recent and self.recent[0] < now - window_s:
            self.recent.popleft()

    def info(self, now: float, window_s: float) -> WorkerInfo:
        self.prune(now, window_s)
        return WorkerInfo(
            **self.caps.model_dump(),
            sessions=len(self.sessions),
            free_slots=self.free_slots,
            draining=self.draining,
            recent_jobs=self.recent_jobs,
            online_since=self.online_since,
        )


class Registry:
    """Registered workers per room."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, WorkerEntry]] = {}

    def register(self, room: str, caps: WorkerCapabilities, conn: Any,
                 *, draining: bool = False,
                 now: float | None = None) -> tuple[WorkerEntry, WorkerEntry | None]:
        """Add or replace a worker; return (new entry, replaced entry or None)."""
        workers = self.rooms.setdefault(room, {})
        old = workers.get(caps.name)
        entry = WorkerEntry(room=room, caps=caps, conn=conn, draining=draining,
                            online_since=time.time() if now is None else now)
        if old is not None:
            entry.sessions = old.sessions
            entry.recent = old.recent
            entry.refresh()
            if old.conn is conn:
                entry.online_since = old.online_since
        workers[caps.name] = entry
        return entry, (old if old is not None and old.conn is not conn else None)

    def get(self, room: str, name: str) -> WorkerEntry | None:
        return self.rooms.get(room, {}).get(name)

    def remove(self, room: str, name: str, conn: Any) -> WorkerEntry | None:
        """Remove a worker if it is still bound to ``conn``."""
        workers = self.rooms.get(room, {})
        entry = workers.get(name)
        if entry is None or entry.conn is not conn:
            return None
        del workers[name]
        return entry

    def workers(self, room: str) -> list[WorkerEntry]:
        return list(self.rooms.get(room, {}).values())

    def count(self) -> int:
        return sum(len(w) for w in self.rooms.values())

    def listing(self, room: str, window_s: float, *,
                backend: str | None = None, pipeline: str | None = None,
                min_gpu_memory_mb: int = 0, now: float | None = None) -> list[WorkerInfo]:
        t = time.time() if now is None else now
        out = []
        for e in sorted(self.workers(room), key=lambda e: e.name):
            if backend is not None and backend not in e.caps.backend_names():
                continue
            if pipeline is not None and pipeline not in e.caps.pipelines:
                continue
            if min_gpu_memory_mb and e.caps.max_gpu_memory_mb() < min_gpu_memory_mb:
                continue
            out.append(e.info(t, window_s))
        return out
