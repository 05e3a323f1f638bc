"""The pool's SLURM side: ``sbatch``, ``squeue`` and ``scancel`` run as subprocesses.

The pool's jobs are found by their job name, ``rtcpool.<room>.<template>.<kind>``, so a restarted
pool finds the jobs it submitted before (and two pools of different rooms never mix).
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.pool.decide import Kind, PoolJob

JOB_PREFIX = "rtcpool"
COMMAND_TIMEOUT_S = 60.0


class SlurmError(RtcAnnotatorError):
    """A SLURM command failed or is missing."""

    code = "SLURM_ERROR"
    default_hint = "check that sbatch/squeue/scancel work from this shell (SLURM_CONF, PATH)"


def safe(text: str) -> str:
    """A piece of a job name: letters, digits, ``_`` and ``-``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def job_name(room: str, template: str, kind: Kind) -> str:
    return f"{JOB_PREFIX}.{safe(room)}.{template}.{kind}"


_WORKER_JOB = re.compile(r"-(\d+)(?:-r\d+)?$")


def job_of_worker(worker_name: str) -> str | None:
    """The SLURM job id in a worker name ``<prefix>-<node>-<job id>[-r<restarts>]``."""
    m = _WORKER_JOB.search(worker_name)
    return m.group(1) if m else None


@dataclass
class Slurm:
    """Runs the SLURM commands with ``env`` (defaults to this process's environment)."""

    env: Mapping[str, str] | None = None

    async def _run(self, *args: str, cwd: Path | None = None,
                   env: Mapping[str, str] | None = None) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL, cwd=cwd,
                env=dict(env if env is not None else (self.env or os.environ)))
        except FileNotFoundError:
            raise SlurmError(f"{args[0]} is not installed or not on the PATH") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SlurmError(f"{args[0]} did not answer in {COMMAND_TIMEOUT_S:g} s",
                             hint="is slurmctld up? (sinfo)") from None
        if proc.returncode != 0:
            reason = err.decode(errors="replace").strip().splitlines()
            raise SlurmError(f"{args[0]} failed (exit {proc.returncode}): "
                             f"{reason[-1] if reason else 'no message'}")
        return out.decode(errors="replace")

    async def jobs(self, room: str) -> list[PoolJob]:
        """The room pool's alive jobs (pending, running, completing)."""
        out = await self._run("squeue", "--noheader", "--user", getpass.getuser(),
                              "--format", "%i|%j|%T|%r")
        prefix = f"{JOB_PREFIX}.{safe(room)}."
        jobs: list[PoolJob] = []
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) != 4 or not parts[1].startswith(prefix):
                continue
            job_id, name, state, reason = parts
            template, _, kind = name[len(prefix):].rpartition(".")
            if kind not in ("base", "burst") or not template:
                continue
            if state == "COMPLETING":
                continue  # its worker is gone; it frees the node in a moment
            jobs.append(PoolJob(job_id=job_id, template=template, kind=kind,  # type: ignore[arg-type]
                                state=state, reason="" if reason == "None" else reason))
        return jobs

    async def submit(self, script: Path, name: str, *, env: Mapping[str, str],
                     cwd: Path) -> str:
        """``sbatch`` the script under ``name``; return the job id."""
        out = await self._run("sbatch", "--parsable", f"--job-name={name}", str(script),
                              cwd=cwd, env=env)
        job_id = out.strip().split(";")[0]
        if not job_id.isdigit():
            raise SlurmError(f"sbatch printed {out.strip()[:80]!r}, not a job id")
        return job_id

    async def cancel(self, job_id: str) -> None:
        await self._run("scancel", job_id)
