"""What the pool should do now: a pure function of what it sees (no I/O, no clock).

:func:`decide` takes a :class:`PoolState` -- the pool's SLURM jobs (from ``squeue``), which of
them have a worker online in the room, and the room's queued route requests -- and returns a
:class:`Plan`: jobs to submit, jobs to cancel, and notes that say why nothing more is done.

Rules, in order:

1. never more than ``max_workers`` jobs: above it (the limit was lowered), cancel pending jobs,
   newest first;
2. keep ``min_workers`` jobs: submit *base* workers (no idle exit) from the first template;
3. for the queued requests (requests pinned to one worker -- reattaching -- are left out), give
   each to the first template whose workers could take it (offers every pipeline; mounts the
   backend when the storage requirement is strict); per template, submit as many *burst*
   workers (they exit after ``idle_exit_s`` without work) as the requests need slots, minus the
   slots of that template's jobs still starting (pending, or running without a worker online);
4. a burst job still pending while no queued request needs its template is cancelled (never
   below ``min_workers``).

Scaling down running workers is theirs to do: idle burst workers exit by themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["base", "burst"]
PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING"})


@dataclass(frozen=True)
class Template:
    """A worker config the pool starts workers from, as the routing sees its workers."""

    name: str
    pipelines: frozenset[str]
    backends: frozenset[str]
    slots: int = 1

    def can_take(self, want: Want) -> bool:
        if not set(want.pipelines) <= self.pipelines:
            return False
        return not (want.strict and want.required_storage not in self.backends)


@dataclass(frozen=True)
class PoolJob:
    """One of the pool's SLURM jobs (alive: pending or running)."""

    job_id: str
    template: str
    kind: Kind
    state: str
    reason: str = ""
    """Why it pends (squeue's reason), when it does."""

    @property
    def pending(self) -> bool:
        return self.state in PENDING_STATES


@dataclass(frozen=True)
class Want:
    """A queued route request of the room."""

    route_id: str
    pipelines: tuple[str, ...] = ()
    required_storage: str | None = None
    strict: bool = False
    """Only workers mounting ``required_storage`` may take it (request or room policy)."""
    worker: str | None = None
    """Pinned to one worker (reattach): no new worker can take it."""


@dataclass(frozen=True)
class PoolState:
    templates: tuple[Template, ...]
    min_workers: int
    max_workers: int
    jobs: tuple[PoolJob, ...] = ()
    online: frozenset[str] = frozenset()
    """Job ids of the pool's jobs whose worker is online in the room."""
    queue: tuple[Want, ...] = ()


@dataclass(frozen=True)
class Submit:
    template: str
    kind: Kind
    reason: str


@dataclass(frozen=True)
class Cancel:
    job_id: str
    reason: str


Action = Submit | Cancel


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Why it does no more than that (limits reached, requests no template can take)."""


def _requirement(want: Want) -> str:
    parts = [f"pipelines {','.join(want.pipelines) or '-'}"]
    if want.required_storage is not None:
        parts.append(f"storage {want.required_storage}{' (strict)' if want.strict else ''}")
    return ", ".join(parts)


def decide(state: PoolState) -> Plan:
    """The actions that bring the pool where it should be (see the module docstring)."""
    actions: list[Action] = []
    notes: list[str] = []
    jobs = list(state.jobs)
    lo, hi = state.min_workers, state.max_workers

    # 1. over the limit: cancel pending jobs, newest first
    if len(jobs) > hi:
        for job in sorted((j for j in jobs if j.pending), key=_job_order, reverse=True):
            if len(jobs) <= hi:
                break
            actions.append(Cancel(job.job_id, f"{len(jobs)} jobs exceed max_workers={hi}"))
            jobs.remove(job)
        if len(jobs) > hi:
            notes.append(f"{len(jobs)} running jobs exceed max_workers={hi}: they are left to "
                         "finish (idle workers exit by themselves)")

    if not state.templates:
        notes.append("no worker template configured ([pool] templates)")
        return Plan(tuple(actions), tuple(notes))
    count = len(jobs)

    # 2. keep min_workers
    first = state.templates[0].name
    starting: dict[str, int] = {t.name: 0 for t in state.templates}
    slots = {t.name: t.slots for t in state.templates}
    for job in jobs:
        if job.job_id not in state.online and job.template in starting:
            starting[job.template] += slots[job.template]
    while count < min(lo, hi):
        actions.append(Submit(first, "base", f"{count} job(s) < min_workers={lo}"))
        starting[first] += slots[first]
        count += 1

    # 3. queued requests, per template
    demand: dict[str, int] = {t.name: 0 for t in state.templates}
    orphans: list[Want] = []
    for want in state.queue:
        if want.worker is not None:
            continue
        template = next((t for t in state.templates if t.can_take(want)), None)
        if template is None:
            orphans.append(want)
        else:
            demand[template.name] += 1
    if orphans:
        kinds = sorted({_requirement(w) for w in orphans})
        notes.append(f"{len(orphans)} queued request(s) no template can take: "
                     + "; ".join(kinds))
    waiting = 0
    for t in state.templates:
        missing = demand[t.name] - starting[t.name]
        if missing <= 0:
            continue
        wanted = math.ceil(missing / t.slots)
        room = hi - count
        if room <= 0:
            waiting += wanted
            continue
        n = min(wanted, room)
        for _ in range(n):
            actions.append(Submit(t.name, "burst",
                                  f"{demand[t.name]} queued request(s) for {t.name}, "
                                  f"{starting[t.name]} slot(s) starting"))
        count += n
        waiting += wanted - n
    if waiting:
        notes.append(f"at max_workers={hi}: {waiting} more worker(s) would be needed")

    # 4. pending burst jobs nobody needs any more
    for job in sorted((j for j in jobs if j.pending and j.kind == "burst"),
                      key=_job_order, reverse=True):
        if demand.get(job.template, 0) == 0 and count > lo:
            actions.append(Cancel(job.job_id, f"no queued request needs {job.template} now"))
            count -= 1
    return Plan(tuple(actions), tuple(notes))


def _job_order(job: PoolJob) -> tuple[int, str]:
    return (int(job.job_id) if job.job_id.isdigit() else 0, job.job_id)
