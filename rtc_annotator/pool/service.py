"""``rtc-annotator pool run``: look at the room and SLURM every ``poll_s``, act on :func:`decide`.

Each round: the room's queued route requests (``route_queue``, admin), its online workers and
routing policy from the signaling server; the pool's jobs from ``squeue``. Then
:func:`~rtc_annotator.pool.decide.decide` says what to submit or cancel, and the service does it,
logs every action with its reason and writes ``<state_dir>/status.json`` (``pool status``).
When the signaling server cannot be asked, the round does nothing (it never submits blind).

Workers are submitted with the job script rendered from each template's config
(``<state_dir>/<template>.sbatch``) and an environment without this process's
``RTC_ANNOTATOR_*`` settings (the pool's admin token must never reach a worker), plus
``RTC_ANNOTATOR_WORKER_IDLE_EXIT_S``: ``[pool] idle_exit_s`` for burst workers, 0 for base ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rtc_annotator.config import KNOWN_PIPELINES, Settings, load_settings
from rtc_annotator.deploy.render import render_worker
from rtc_annotator.errors import ConfigError, RtcAnnotatorError
from rtc_annotator.logs import get_logger
from rtc_annotator.pool.decide import (
    Cancel,
    Plan,
    PoolJob,
    PoolState,
    Submit,
    Template,
    Want,
    decide,
)
from rtc_annotator.pool.slurm import Slurm, job_name, job_of_worker, safe
from rtc_annotator.signaling_client import SignalingClient

_log = get_logger(__name__)

STATUS_FILE = "status.json"
EVENTS_KEPT = 100
KEEP_ENV = ("RTC_ANNOTATOR_VENV", "RTC_ANNOTATOR_SIF", "RTC_ANNOTATOR_LOG_FORMAT")
"""``RTC_ANNOTATOR_*`` variables that do reach the workers (how to run them, not settings)."""


def load_templates(settings: Settings) -> list[tuple[Template, Settings, Path]]:
    """Each ``[pool] templates`` file as (template, its settings, its absolute path)."""
    pool = settings.pool
    if not pool.templates:
        raise ConfigError("[pool] templates is empty",
                          hint='list the worker config files: templates = ["/nfs/rtc/worker.toml"]')
    if pool.min_workers > pool.max_workers:
        raise ConfigError(f"[pool] min_workers ({pool.min_workers}) > max_workers "
                          f"({pool.max_workers})", hint="raise max_workers or lower min_workers")
    out: list[tuple[Template, Settings, Path]] = []
    seen: set[str] = set()
    for i, raw in enumerate(pool.templates):
        path = Path(os.path.abspath(raw.expanduser()))
        tsettings = load_settings(path, env={})
        name = safe(path.stem)[:20]
        if name in seen:
            name = f"{name[:17]}-{i}"
        seen.add(name)
        w = tsettings.worker
        template = Template(name=name, pipelines=frozenset(w.pipelines or KNOWN_PIPELINES),
                            backends=frozenset(tsettings.storage), slots=w.job_slots or 1)
        out.append((template, tsettings, path))
    return out


def worker_env(base: dict[str, str], idle_exit_s: float) -> dict[str, str]:
    env = {k: v for k, v in base.items()
           if not k.startswith("RTC_ANNOTATOR_") or k in KEEP_ENV}
    env["RTC_ANNOTATOR_WORKER_IDLE_EXIT_S"] = f"{idle_exit_s:g}"
    return env


class PoolService:
    """One pool: a room (from the admin token) and its SLURM jobs."""

    def __init__(self, settings: Settings, *, slurm: Slurm | None = None,
                 signaling: SignalingClient | None = None) -> None:
        self.settings = settings
        self.pool = settings.pool
        self.templates = load_templates(settings)
        self.slurm = slurm or Slurm()
        if signaling is None and not settings.signaling.token:
            raise ConfigError("[signaling] token is not set",
                              hint="the pool needs the room's admin token "
                                   "(RTC_ANNOTATOR_SIGNALING_TOKEN or [signaling] token)")
        self.signaling = signaling or SignalingClient.from_settings(settings.signaling)
        self.state_dir = self.pool.state_dir
        self.room = ""
        self.scripts: dict[str, Path] = {}
        self.events: list[dict[str, Any]] = self._load_events()
        self.last: dict[str, Any] = {}
        self.submitted_at: dict[str, float] = {}
        """When this process submitted each job (to report the time until it is online)."""
        self.seen_online: set[str] = set()

    # ------------------------------------------------------------------ setup

    def _load_events(self) -> list[dict[str, Any]]:
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads((self.pool.state_dir / STATUS_FILE).read_text())
            return list(data.get("events", []))[-EVENTS_KEPT:]
        return []

    def render(self) -> None:
        """Write each template's job script into the state directory."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        for template, tsettings, path in self.templates:
            script = self.state_dir / f"{template.name}.sbatch"
            script.write_text(render_worker("slurm", tsettings, config_path=str(path)))
            script.chmod(0o755)
            self.scripts[template.name] = script

    async def start(self) -> None:
        self.render()
        welcome = await self.signaling.connect()
        if welcome.get("role") != "admin":
            raise ConfigError(f"the pool's token has role {welcome.get('role')!r}, not admin",
                              hint="give the pool the room's admin token")
        policy = (await self.signaling.request("get_policy"))["policy"]
        if not policy.get("wait_for_workers"):
            await self.signaling.request("set_policy", policy={**policy, "wait_for_workers": True})
            self._event("policy", reason="wait_for_workers turned on: route requests queue while "
                        "no worker can take them, so the pool can start one")
        self.room = str(welcome.get("room") or "")  # set last: the pool is ready
        _log.info("pool started", ctx={
            "room": self.room, "min_workers": self.pool.min_workers,
            "max_workers": self.pool.max_workers,
            "templates": ",".join(t.name for t, _s, _p in self.templates)})

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.signaling.close()

    # ------------------------------------------------------------------ one round

    async def observe(self) -> tuple[PoolState, dict[str, Any]]:
        """What the room and SLURM look like now."""
        queue = (await self.signaling.request("route_queue"))["queue"]
        workers = await self.signaling.list_workers()
        policy = (await self.signaling.request("get_policy"))["policy"]
        jobs = await self.slurm.jobs(self.room)
        ids = {j.job_id for j in jobs}
        online: dict[str, str] = {}
        for w in workers:
            job = job_of_worker(str(w["name"]))
            if job in ids:
                online[job] = str(w["name"])
        wants = tuple(_want(q, policy) for q in queue)
        state = PoolState(templates=tuple(t for t, _s, _p in self.templates),
                          min_workers=self.pool.min_workers, max_workers=self.pool.max_workers,
                          jobs=tuple(jobs), online=frozenset(online), queue=wants)
        return state, online

    async def step(self) -> Plan:
        """One round: observe, decide, act, write the status."""
        try:
            state, online = await self.observe()
        except RtcAnnotatorError as exc:
            _log.warning("cannot look at the room or SLURM; doing nothing this round",
                         ctx={"code": exc.code, "error": exc.message})
            self._write_status(error=f"{exc.code}: {exc.message}")
            return Plan()
        for job_id, worker in online.items():
            if job_id not in self.seen_online:
                self.seen_online.add(job_id)
                since = self.submitted_at.get(job_id)
                self._event("online", job_id=job_id, worker=worker,
                            after_s=round(time.time() - since, 1) if since else None,
                            reason="its worker registered in the room")
        plan = decide(state)
        for action in plan.actions:
            await self._apply(action)
        self.last = {"jobs": [_job_row(j, online) for j in state.jobs],
                     "queue": len(state.queue), "online": len(online), "notes": list(plan.notes)}
        for note in plan.notes:
            _log.info("pool note", ctx={"room": self.room, "note": note})
        self._write_status()
        return plan

    async def _apply(self, action: Submit | Cancel) -> None:
        if isinstance(action, Cancel):
            try:
                await self.slurm.cancel(action.job_id)
            except RtcAnnotatorError as exc:
                self._event("cancel_failed", job_id=action.job_id, reason=exc.message)
                return
            self._event("cancelled", job_id=action.job_id, reason=action.reason)
            return
        idle = self.pool.idle_exit_s if action.kind == "burst" else 0.0
        try:
            job_id = await self.slurm.submit(
                self.scripts[action.template], job_name(self.room, action.template, action.kind),
                env=worker_env(dict(os.environ), idle), cwd=self.state_dir / "logs")
        except RtcAnnotatorError as exc:
            self._event("submit_failed", template=action.template, kind=action.kind,
                        reason=exc.message)
            return
        self.submitted_at[job_id] = time.time()
        self._event("submitted", job_id=job_id, template=action.template, kind=action.kind,
                    reason=action.reason)

    def _event(self, action: str, **fields: Any) -> None:
        event = {"at": round(time.time(), 3), "action": action, **fields}
        self.events = [*self.events, event][-EVENTS_KEPT:]
        _log.info(f"pool {action}", ctx={"room": self.room, **fields})

    def _write_status(self, error: str | None = None) -> None:
        status = {"room": self.room, "updated_at": round(time.time(), 3), "pid": os.getpid(),
                  "poll_s": self.pool.poll_s, "min_workers": self.pool.min_workers,
                  "max_workers": self.pool.max_workers, "idle_exit_s": self.pool.idle_exit_s,
                  "templates": [{**asdict(t), "pipelines": sorted(t.pipelines),
                                 "backends": sorted(t.backends),
                                 "script": str(self.scripts.get(t.name, ""))}
                                for t, _s, _p in self.templates],
                  "error": error, **self.last, "events": self.events}
        tmp = self.state_dir / f".{STATUS_FILE}.tmp"
        try:
            tmp.write_text(json.dumps(status, indent=1, sort_keys=True))
            tmp.replace(self.state_dir / STATUS_FILE)
        except OSError as exc:
            _log.warning("cannot write the pool status", ctx={"error": exc.strerror})

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds every ``poll_s`` until ``stop`` is set; the jobs are left running."""
        await self.start()
        try:
            while not stop.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.pool.poll_s)
        finally:
            _log.info("pool stopped; its workers keep running", ctx={"room": self.room})
            await self.close()


def _want(q: dict[str, Any], policy: dict[str, Any]) -> Want:
    req = q.get("requirements") or {}
    storage = req.get("required_storage")
    strict = bool(storage) and (bool(req.get("strict")) or policy.get("storage") == "strict"
                                or storage in (policy.get("strict_backends") or []))
    return Want(route_id=str(q.get("route_id")), pipelines=tuple(req.get("pipelines") or ()),
                required_storage=storage, strict=strict, worker=req.get("worker"))


def _job_row(job: PoolJob, online: dict[str, str]) -> dict[str, Any]:
    return {"job_id": job.job_id, "template": job.template, "kind": job.kind,
            "state": job.state, "reason": job.reason, "worker": online.get(job.job_id)}


def read_status(state_dir: Path) -> dict[str, Any]:
    path = state_dir / STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RtcAnnotatorError(f"no pool status in {state_dir}", code="POOL_NOT_FOUND",
                                hint="start one with `rtc-annotator pool run`, or give the "
                                     "[pool] state_dir it uses") from None
    except (OSError, ValueError) as exc:
        raise RtcAnnotatorError(f"cannot read {path}: {exc}", code="POOL_NOT_FOUND") from None
    if not isinstance(data, dict):
        raise RtcAnnotatorError(f"{path} is not a pool status", code="POOL_NOT_FOUND")
    return data
