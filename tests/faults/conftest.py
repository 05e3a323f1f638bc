"""Fault-test fixtures: real processes and servers on 127.0.0.1, every one stopped in teardown.

Re-exports the e2e fixtures (``signaling_server``, ``room_tokens``, ``make_settings``) and adds:

* ``procs``: a :class:`Procs` that starts subprocesses in their own process group and kills
  whatever is still running at the end of the test;
* ``noisy_video``: a ~5 MB H.264 video (4 scenes, noise on top so it does not compress), large
  enough that a transfer spans many 64 KiB chunks and several 1 MiB disk writes;
* ``start_agent``: an in-process :class:`WorkerAgent` with knobs the faults need (job slots,
  one artifact per batch so the stream has several batches, its own cache dir);
* helpers to route and connect a client by hand, so a test can cut and reattach.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.store import Store
from rtc_annotator.transport.peer import CallbackSignaler, LinkOptions, PeerLink
from rtc_annotator.worker.agent import WorkerAgent
from tests.e2e import conftest as e2e
from tests.e2e.conftest import ADMIN_SECRET, fast_link
from tests.e2e.conftest import MakeSettings as MakeSettings  # re-exported for the tests

# the e2e fixtures, re-exported for this directory
signaling_server = e2e.signaling_server
room_tokens = e2e.room_tokens
make_settings = e2e.make_settings
start_worker = e2e.start_worker

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    env.update(YOLO_OFFLINE="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


class Procs:
    """Subprocesses of one test; each in its own session so a kill reaches its children."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, args: list[str],
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.logdir / f"{name}.log").open("ab")
        proc = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                                env={**child_env(), **(env or {})}, cwd=REPO,
                                start_new_session=True)
        log.close()
        self.running[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.running[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.running.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.running.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.running.clear()


@pytest.fixture
def procs(tmp_path: Path) -> Any:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    p = Procs(logdir)
    try:
        yield p
    finally:
        p.stop_all()


class SignalingProcess:
    """``python -m signaling`` on a fixed port and state file, so it can be killed and
    restarted as the same server."""

    def __init__(self, procs: Procs, state: Path, *, name: str = "signaling") -> None:
        self.procs = procs
        self.state = state
        self.name = name
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.starts = 0

    async def start(self) -> float:
        """Start and wait until it accepts connections; returns the loop time it did."""
        self.starts += 1
        self.procs.spawn(f"{self.name}", [
            "-m", "signaling", "--host", "127.0.0.1", "--port", str(self.port),
            "--state", str(self.state),
            "--heartbeat", "0.5", "--gone-after", "3", "--rate", "1000", "--burst", "1000"],
            env={"SIGNALING_ADMIN_SECRET": ADMIN_SECRET})  # never on a command line (ps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while loop.time() < deadline:
            if self.procs.running[self.name].poll() is not None:
                raise AssertionError("signaling exited:\n" + self.procs.log(self.name))
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return loop.time()
            except OSError:
                await asyncio.sleep(0.02)
        raise AssertionError("signaling did not start:\n" + self.procs.log(self.name))

    def kill(self) -> None:
        self.procs.kill(self.name, signal.SIGKILL)


async def make_room(url: str) -> dict[str, str]:
    """A room with admin, worker and client tokens, through the admin secret."""
    root = SignalingClient(url, admin_secret=ADMIN_SECRET, reconnect=False)
    await root.connect()
    created = await root.request("create_room", name="faults-lab")
    await root.close()
    admin = SignalingClient(url, token=created["token"], reconnect=False)
    await admin.connect()
    tokens = {"admin": created["token"]}
    for role in ("worker", "client"):
        tokens[role] = (await admin.request("issue_token", role=role, ttl_s=600))["token"]
    await admin.close()
    return tokens


@pytest.fixture
def noisy_video(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 one-second scenes (hard cuts at 1, 2, 3 s), 640x360, temporal noise: about 5 MB."""
    out = tmp_path_factory.getbasetemp() / "faults-noisy.mp4"
    if not out.exists():
        colors = ("red", "blue", "green", "yellow")
        args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
        for c in colors:
            args += ["-f", "lavfi", "-i", f"color=c={c}:s=640x360:r=25:d=1"]
        filt = "".join(f"[{i}:v]" for i in range(len(colors)))
        filt += f"concat=n={len(colors)}:v=1:a=0,noise=alls=12:allf=t[v]"
        tmp = out.with_suffix(".tmp.mp4")
        args += ["-filter_complex", filt, "-map", "[v]", "-c:v", "libx264", "-preset",
                 "ultrafast", "-pix_fmt", "yuv420p", str(tmp)]
        subprocess.run(args, check=True)
        os.replace(tmp, out)
    return out


StartAgent = Callable[..., Awaitable[WorkerAgent]]


@pytest.fixture
def start_agent(start_worker: e2e.StartWorker) -> StartAgent:
    """In-process worker agents with the fault tests' defaults (2 slots, one output per batch,
    so faults can strike between batches); see ``tests/e2e/conftest.py``."""

    async def start(name: str, *, job_slots: int = 2, cache_dir: Path | None = None,
                    batch_max: int = 1) -> WorkerAgent:
        return await start_worker(name, job_slots=job_slots, cache_dir=cache_dir,
                                  batch_max=batch_max)

    return start


stop_agent = e2e.stop_worker


async def connect_to(sig: SignalingClient, pipelines: list[str], *, worker: str | None = None,
                     options: LinkOptions | None = None) -> tuple[str, str, PeerLink]:
    """Route (optionally to one named worker, as a reattach does) and open a peer link.
    Returns (session_id, worker name, link)."""
    routed = await sig.request("route", timeout=30, pipelines=pipelines, required_storage=None,
                               min_gpu_memory_mb=0, strict=False, worker=worker)
    session_id = str(routed["session_id"])
    signaler = CallbackSignaler.for_session(sig, session_id)
    link = await PeerLink.connect(signaler, offer=True, role="client", name="fault-client",
                                  options=options or fast_link())
    return session_id, str(routed["worker"]), link


async def store_contents(store: Store, asset_id: str) -> list[tuple[str, str]]:
    """Every stored artifact of the asset as (artifact_id, canonical payload JSON), sorted;
    duplicates would show as repeated entries."""
    rows = await store.artifacts(asset_id, apply_selection=False, limit=100_000)
    return sorted((r.artifact_id, json.dumps(r.payload, sort_keys=True)) for r in rows)


def partial_files(cache_root: Path) -> list[Path]:
    return sorted((cache_root / "partial").glob("*")) if (cache_root / "partial").exists() else []


def have_mount_rights() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None
