"""A real single-node SLURM cluster (scripts/test-slurm.sh), a real signaling server on
127.0.0.1 and worker jobs that run this checkout's virtualenv.

``make test`` starts the cluster and sets ``RTC_ANNOTATOR_TEST_SLURM_CONF``; run alone
(``pytest tests/slurm``) the session starts one itself when it can (root, slurm-wlm and munge
installed). Where SLURM cannot run the tests skip with the reason -- and fail under CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from rtc_annotator.signaling_client import SignalingClient
from signaling.app import SignalingServer
from signaling.config import ServerConfig

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ADMIN_SECRET = "slurm-test-admin-secret"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the SLURM tests may not be skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_conf() -> Iterator[str]:
    """Path of the test cluster's slurm.conf."""
    conf = os.environ.get("RTC_ANNOTATOR_TEST_SLURM_CONF")
    if conf:
        yield conf
        return
    if os.geteuid() != 0 or shutil.which("slurmctld") is None or shutil.which("munged") is None:
        _unavailable("no SLURM cluster: run the suite with `make test` (it installs slurm-wlm "
                     "and munge and starts one as root), or set RTC_ANNOTATOR_TEST_SLURM_CONF")
    cluster = tempfile.mkdtemp(prefix="rtc-annotator-slurm.")
    script = ROOT / "scripts" / "test-slurm.sh"
    started = subprocess.run([str(script), "start", cluster], capture_output=True, text=True,
                             timeout=90)
    try:
        if started.returncode != 0:
            _unavailable(f"could not start a SLURM cluster: {started.stderr.strip()[-300:]}")
        yield started.stdout.strip()
    finally:
        subprocess.run([str(script), "stop", cluster], capture_output=True, timeout=90)


@pytest.fixture(scope="session")
def slurm_env(slurm_conf: str) -> dict[str, str]:
    """Environment for sbatch/squeue/scancel: the test cluster, this checkout's venv for the
    workers, none of this process's RTC_ANNOTATOR_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    env.update(SLURM_CONF=slurm_conf, RTC_ANNOTATOR_VENV=sys.prefix, PYTHONUNBUFFERED="1")
    probe = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                           env=env, timeout=30)
    if probe.returncode != 0 or "idle" not in probe.stdout and "mix" not in probe.stdout:
        _unavailable(f"the SLURM test cluster does not answer: {probe.stderr.strip()[-200:]}")
    return env


def slurm(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=60,
                          cwd=cwd)
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc.stdout


def job_field(env: dict[str, str], job_id: str, key: str) -> str:
    out = slurm(env, "scontrol", "show", "job", "-o", job_id)
    m = re.search(rf"(?:^| ){key}=(\S*)", out)
    assert m, out
    return m.group(1)


class Jobs:
    """sbatch from a test; every job left is cancelled (SIGKILL) at the end of the test."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.ids: list[str] = []

    def submit(self, script: Path, *extra: str, env: dict[str, str] | None = None) -> str:
        out = slurm(env or self.env, "sbatch", "--parsable", *extra, str(script), cwd=self.cwd)
        job_id = out.strip().split(";")[0]
        self.ids.append(job_id)
        return job_id

    def alive(self, name_prefix: str | None = None) -> list[tuple[str, str, str]]:
        """(job id, name, state) of the user's pending/running jobs."""
        out = slurm(self.env, "squeue", "-h", "-o", "%i|%j|%T")
        rows = [tuple(line.split("|")) for line in out.split()]
        return [r for r in rows if name_prefix is None or r[1].startswith(name_prefix)]  # type: ignore[misc]

    def cleanup(self) -> None:
        ids = self.ids + [r[0] for r in self.alive("rtcpool.")]
        if ids:
            subprocess.run(["scancel", "--full", "--signal=KILL", *ids], env=self.env,
                           capture_output=True, timeout=30)
            subprocess.run(["scancel", *ids], env=self.env, capture_output=True, timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(r[0] in ids for r in self.alive()):
            time.sleep(0.2)


@pytest.fixture
def jobs(slurm_env: dict[str, str], tmp_path: Path) -> Iterator[Jobs]:
    tracker = Jobs(slurm_env, tmp_path)
    try:
        yield tracker
    finally:
        tracker.cleanup()


@pytest.fixture
async def signaling_server(tmp_path: Path) -> AsyncIterator[SignalingServer]:
    cfg = ServerConfig(
        state_path=tmp_path / "signaling-state.sqlite3", admin_secret=ADMIN_SECRET,
        host="127.0.0.1", port=0, heartbeat_s=0.5, gone_after_s=10.0, session_grace_s=2.0,
        sweep_interval_s=0.1, hello_timeout_s=5.0, rate_per_s=1000.0, rate_burst=1000.0,
    )
    srv = SignalingServer(cfg)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def room_tokens(signaling_server: SignalingServer) -> dict[str, str]:
    root = SignalingClient(signaling_server.url, admin_secret=ADMIN_SECRET, reconnect=False)
    await root.connect()
    created = await root.request("create_room", name="lab")
    await root.close()
    admin = SignalingClient(signaling_server.url, token=created["token"], reconnect=False)
    await admin.connect()
    tokens = {"admin": created["token"]}
    for role in ("worker", "client"):
        tokens[role] = (await admin.request("issue_token", role=role, ttl_s=600))["token"]
    await admin.close()
    return tokens


async def let_requests_wait(url: str, admin_token: str) -> None:
    """Room policy wait_for_workers: a request routed again while the room's only other
    worker is reconnecting (a loaded machine) waits instead of failing NO_MATCHING_WORKER."""
    admin = SignalingClient(url, token=admin_token, reconnect=False)
    await admin.connect()
    try:
        policy = (await admin.request("get_policy"))["policy"]
        await admin.request("set_policy", policy={**policy, "wait_for_workers": True})
    finally:
        await admin.close()


def worker_toml(path: Path, url: str, token: str, **worker: Any) -> Path:
    """A worker config as an operator writes it (the token in the file, not on a command
    line); CPU-only jobs of 1 CPU so that several fit the 8 CPUs the test node advertises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps({
        "signaling": {"url": url, "token": token, "heartbeat_s": 0.5, "reconnect_max_s": 1.0},
        "worker": {"cache_dir": str(path.parent / "cache"), "job_slots": 1,
                   "pipelines": ["metadata", "scenes"], "shutdown_grace_s": 5.0, **worker},
        "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
        "cluster": {"gpus": 0, "cpus": 1, "time_limit": "00:10:00",
                    "log_dir": str(path.parent / "logs")},
    }))
    path.chmod(0o600)
    (path.parent / "logs").mkdir(exist_ok=True)
    return path


def render(config: Path, out: Path) -> Path:
    proc = subprocess.run([sys.executable, "-m", "rtc_annotator", "worker", "--render", "slurm",
                           "--config", str(config), "-o", str(out)],
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("RTC_ANNOTATOR_")})
    assert proc.returncode == 0, proc.stderr
    return out


async def online(url: str, admin_token: str) -> dict[str, dict[str, Any]]:
    admin = SignalingClient(url, token=admin_token, reconnect=False)
    await admin.connect()
    try:
        return {w["name"]: w for w in await admin.list_workers()}
    finally:
        await admin.close()


async def wait_for(predicate: Any, what: str, limit_s: float = 60.0) -> Any:
    """Poll ``predicate`` (sync or async, returning a truthy value when done)."""
    deadline = time.monotonic() + limit_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s:g} s waiting for {what}")
        await asyncio.sleep(0.2)


def log_text(logs: Path, job_id: str) -> str:
    found = list(logs.glob(f"*-{job_id}.log"))
    with contextlib.suppress(OSError):
        return "\n".join(p.read_text(errors="replace") for p in found)
    return ""
