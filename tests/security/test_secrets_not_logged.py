"""Secrets never reach a log line: a signaling server (with an admin secret and a TURN secret),
a real worker agent and a real client job, all at DEBUG, every record captured."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtc_annotator.client.submit import submit_video
from rtc_annotator.config import Settings
from rtc_annotator.logs import configure
from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.store import Store
from rtc_annotator.worker.agent import WorkerAgent
from signaling.turn import IceConfig, turn_credentials
from tests.e2e.conftest import fast_link

from .conftest import ADMIN_SECRET, make_room, start_server

TURN_SECRET = "turn-shared-secret-do-not-log-3f9a"
TTL = 600
NOISY = ("aioice", "aiortc", "websockets", "asyncio", "aiosqlite", "sqlalchemy")


def _settings(tmp: Path, url: str, token: str, name: str) -> Settings:
    return Settings.model_validate({
        "signaling": {"url": url, "token": token, "heartbeat_s": 0.5, "reconnect_max_s": 1.0},
        "worker": {"name": name, "cache_dir": str(tmp / name / "cache"), "job_slots": 1,
                   "shutdown_grace_s": 5.0},
        "client": {"spool_dir": str(tmp / name / "spool")},
        "database": {"url": f"sqlite+aiosqlite:///{tmp / name / 'store.sqlite3'}"},
        "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
        "trust": {"key_path": str(tmp / name / "identity.key")},
    })


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Logging exactly as ``--log-level DEBUG`` sets it up (rtc_annotator.logs.configure),
    into a buffer; the previous set-up is restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level,
             {n: logging.getLogger(n).level for n in NOISY})
    buf = io.StringIO()
    configure("DEBUG", stream=buf)
    try:
        yield buf
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for n, level in saved[2].items():
            logging.getLogger(n).setLevel(level)


async def test_no_secret_in_any_log_line(tmp_path: Path, make_video: Any,
                                         debug_log: io.StringIO) -> None:
    started = time.time()
    # TURN over TCP to a closed port: credentials are handed out, ICE falls back to host
    srv = await start_server(tmp_path / "state.sqlite3", gone_after_s=5.0, session_grace_s=2.0,
                             ice=IceConfig(turn_urls=("turn:127.0.0.1:9?transport=tcp",),
                                           turn_secret=TURN_SECRET, turn_ttl_s=TTL))
    agent_task: asyncio.Task[None] | None = None
    agent: WorkerAgent | None = None
    try:
        tokens = await make_room(srv, "lab")
        (tmp_path / "gpu-1").mkdir()
        (tmp_path / "laptop").mkdir()
        wset = _settings(tmp_path, srv.url, tokens["worker"], "gpu-1")
        sig = SignalingClient.from_settings(wset.signaling, name="gpu-1",
                                            reconnect_min_s=0.05, request_timeout_s=10.0)
        agent = WorkerAgent(wset, signaling=sig, link_options=fast_link())
        agent_task = asyncio.create_task(agent.run())
        await asyncio.wait_for(agent.ready.wait(), 15)

        video = make_video(colors=("red", "blue"), seconds_each=0.5)
        cset = _settings(tmp_path, srv.url, tokens["client"], "laptop")
        store = await Store.open(cset.database.url)
        try:
            result = await asyncio.wait_for(
                submit_video(cset, video, store=store, pipelines=["metadata"],
                             link_options=fast_link()), 60)
        finally:
            await store.close()
        assert result.ok, result.error
        # a client that sees its own TURN credential (to know what must not be logged)
        probe = SignalingClient(srv.url, token=tokens["client"], name="probe", reconnect=False)
        await probe.connect()
        with contextlib.suppress(Exception):
            await probe.route(pipelines=["metadata"])
        await probe.close()
    finally:
        if agent is not None:
            agent.stop()
        if agent_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(agent_task, 20)
        await srv.stop()
    ended = time.time()

    secrets = {"admin secret": ADMIN_SECRET, "TURN secret": TURN_SECRET}
    for role in ("admin", "worker", "client"):
        token = tokens[role]
        secrets[f"{role} token"] = token
        secrets[f"{role} token signature"] = token.rsplit(".", 1)[-1]
    # every TURN credential the server can have handed out during the test
    identities = {"worker:gpu-1", "client:laptop", "client:probe"}
    for ident in identities:
        for t in range(int(started) - 2, int(ended) + 3):
            _, password = turn_credentials(TURN_SECRET, ident, ttl_s=TTL, now=t)
            secrets[f"TURN credential {ident} {t}"] = password
    lines = debug_log.getvalue().splitlines()
    assert len(lines) > 50  # DEBUG capture really ran
    assert any(" DEBUG " in line for line in lines)
    assert any("peer authenticated" in line for line in lines)
    assert any("job finished" in line for line in lines)
    for what, secret in secrets.items():
        leaked = [line[:200] for line in lines if secret in line]
        assert not leaked, f"{what} appears in a log line: {leaked[:2]}"
