"""End-to-end fixtures: a real signaling server, real worker agents and real clients on
127.0.0.1, the store on SQLite; only timers are shortened."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rtc_annotator.config import Settings
from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.transport.peer import LinkOptions
from rtc_annotator.worker.agent import WorkerAgent
from rtc_annotator.worker.runner import JobRunner
from signaling.app import SignalingServer
from signaling.config import ServerConfig

ADMIN_SECRET = "e2e-admin-secret"


@pytest.fixture
async def signaling_server(tmp_path: Path) -> AsyncIterator[SignalingServer]:
    cfg = ServerConfig(
        state_path=tmp_path / "signaling-state.sqlite3", admin_secret=ADMIN_SECRET,
        host="127.0.0.1", port=0, heartbeat_s=0.5, gone_after_s=3.0, session_grace_s=2.0,
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


def fast_link() -> LinkOptions:
    from rtc_annotator.config import IceSettings

    return LinkOptions(ice=IceSettings(servers=[], host_addresses=["127.0.0.1"]),
                       heartbeat_s=0.5, dead_after_s=5.0, connect_timeout_s=20.0)


MakeSettings = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, signaling_server: SignalingServer,
                  room_tokens: dict[str, str]) -> MakeSettings:
    def make(name: str, *, role: str, storage: dict[str, str] | None = None,
             db: Path | None = None) -> Settings:
        data: dict[str, Any] = {
            "signaling": {"url": signaling_server.url, "token": room_tokens[role],
                          "heartbeat_s": 0.5, "reconnect_max_s": 1.0},
            "worker": {"name": name, "cache_dir": str(tmp_path / name / "cache"),
                       "job_slots": 1, "shutdown_grace_s": 5.0},
            "client": {"spool_dir": str(tmp_path / name / "spool")},
            "database": {"url": f"sqlite+aiosqlite:///{db or tmp_path / name / 'store.sqlite3'}"},
            "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
            "storage": {k: {"base_path": v, "type": "nfs"} for k, v in (storage or {}).items()},
            "trust": {"key_path": str(tmp_path / name / "identity.key")},
        }
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
        return Settings.model_validate(data)

    return make


async def wait_online(url: str, token: str, names: set[str], *, present: bool = True) -> None:
    """Wait (at most 60 s) until every worker in ``names`` is listed (or, with
    ``present=False``, none of them is)."""
    admin = SignalingClient(url, token=token, reconnect=False)
    await admin.connect()
    try:
        for _ in range(1200):
            listed = {w["name"] for w in await admin.list_workers()}
            if (names <= listed) if present else not (names & listed):
                return
            await asyncio.sleep(0.05)
        state = "did not register" if present else "are still listed"
        raise AssertionError(f"workers {sorted(names)} {state}")
    finally:
        await admin.close()


StartWorker = Callable[..., Awaitable[WorkerAgent]]
_agent_tasks: dict[int, asyncio.Task[None]] = {}


async def stop_worker(agent: WorkerAgent) -> None:
    """Stop an agent started by ``start_worker`` before the end of the test."""
    agent.stop()
    await asyncio.wait_for(asyncio.shield(_agent_tasks[id(agent)]), 20)


@pytest.fixture
async def start_worker(make_settings: MakeSettings) -> AsyncIterator[StartWorker]:
    """In-process worker agents (real signaling client, peer links, child-process runner),
    stopped and awaited at the end of the test."""
    agents: list[tuple[WorkerAgent, asyncio.Task[None]]] = []

    async def start(name: str, storage: dict[str, str] | None = None, *,
                    job_slots: int | None = None, cache_dir: Path | None = None,
                    batch_max: int | None = None,
                    models: dict[str, Any] | None = None) -> WorkerAgent:
        settings = make_settings(name, role="worker", storage=storage)
        if models is not None:  # [worker] models_dir and [profiles.*] (real-model tests)
            settings.worker.models_dir = Path(models["models_dir"])
            settings.profiles = models.get("profiles", {})
        if job_slots is not None:
            settings.worker.job_slots = job_slots
        if cache_dir is not None:
            settings.worker.cache_dir = cache_dir
        sig = SignalingClient.from_settings(settings.signaling, name=name,
                                            reconnect_min_s=0.05, request_timeout_s=10.0)
        runner = (JobRunner(settings, batch_max=batch_max, flush_s=0.05)
                  if batch_max is not None else None)
        agent = WorkerAgent(settings, signaling=sig, link_options=fast_link(), runner=runner)
        task = asyncio.create_task(agent.run())
        agents.append((agent, task))
        _agent_tasks[id(agent)] = task
        async with asyncio.timeout(15 if models is None else 300):
            while not agent.ready.is_set():
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        return agent

    try:
        yield start
    finally:
        for agent, _task in agents:
            agent.stop()
        for agent, task in agents:
            _agent_tasks.pop(id(agent), None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 20)
