"""PostgreSQL stopped mid-job (``pg_ctl stop -m fast``) and started again: zero artifacts lost.

The test starts its OWN throwaway PostgreSQL server (``scripts/test-postgres.sh start`` in a
temporary directory), so stopping it disturbs no other test. The client's store is on it. After
the first batch was stored, the server is stopped: the next batches cannot reach it, the client
spools them to ``[client] spool_dir`` (fsynced) and acks only those durable copies. One second
after the first spooled batch the server starts again on the same port and data directory; the
spool flushes. Expected: the job completes, the spool is empty, and the store holds every
artifact exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rtc_annotator.client.spool import spool_status
from rtc_annotator.client.submit import submit_video
from rtc_annotator.store import Store

from .conftest import REPO, MakeSettings, StartAgent, fast_link

log = logging.getLogger(__name__)
COLORS = ("red", "blue", "green", "yellow", "white", "black") * 2


def _bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class OwnPostgres:
    """A PostgreSQL server of this test only: start, stop -m fast, start again, remove."""

    def __init__(self, root: Path, bindir: Path) -> None:
        self.root = root
        self.bindir = bindir
        self.url = ""
        self.port = 0

    def _as_pg(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)

    def create(self) -> None:
        r = subprocess.run([str(REPO / "scripts" / "test-postgres.sh"), "start", str(self.root)],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            pytest.skip(f"cannot start a PostgreSQL server: {r.stderr.strip()[-300:]}")
        self.url = r.stdout.strip().splitlines()[-1]
        self.port = int((self.root / "port").read_text())

    def stop_fast(self) -> None:
        subprocess.run(self._as_pg(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"),
                                   "-m", "fast", "-w", "stop"),
                       check=True, capture_output=True, timeout=60)

    def start_again(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        subprocess.run(self._as_pg(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"),
                                   "-l", str(self.root / "server.log"), "-w", "-t", "60",
                                   "start", "-o", opts),
                       check=True, capture_output=True, timeout=90)

    def remove(self) -> None:
        subprocess.run([str(REPO / "scripts" / "test-postgres.sh"), "stop", str(self.root)],
                       capture_output=True, timeout=60)


@pytest.fixture
async def own_postgres() -> AsyncIterator[OwnPostgres]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    # not under pytest's 0700 base temp: the server runs as the postgres user, and the script
    # hands this directory to it (and removes it in ``remove``)
    pg = OwnPostgres(Path(tempfile.mkdtemp(prefix="rtc-faults-pg.")), bindir)
    await asyncio.to_thread(pg.create)
    try:
        yield pg
    finally:
        await asyncio.to_thread(pg.remove)


async def test_postgres_stopped_mid_job_loses_nothing(
    tmp_path: Path, make_video: Any, make_settings: MakeSettings, start_agent: StartAgent,
    own_postgres: OwnPostgres,
) -> None:
    video = make_video(colors=COLORS, seconds_each=1.0, size="320x240")
    await start_agent("gpu-pg")
    settings = make_settings("laptop-pg", role="client")
    store = await Store.open(own_postgres.url)
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"batches": 0, "spooled": 0, "flushed": 0}
    tasks: list[asyncio.Task[None]] = []

    async def start_later() -> None:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(own_postgres.start_again)
        state["started_at"] = loop.time()

    async def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "artifacts":
            state["batches"] += 1
            if "stopped_at" not in state:
                await asyncio.to_thread(own_postgres.stop_fast)  # before this batch is acked
                state["stopped_at"] = loop.time()
        elif kind == "spooled":
            state["spooled"] += 1
            if not tasks:
                tasks.append(asyncio.create_task(start_later()))
        elif kind == "flushed":
            state["flushed"] += 1

    try:
        async with asyncio.timeout(90):
            result = await submit_video(settings, video, store=store,
                                        pipelines=["metadata", "scenes"],
                                        options={"scenes": {"min_scene_len_ms": 200}},
                                        link_options=fast_link(), on_event=on_event,
                                        spool_wait_s=30)
        assert result.ok, result.error
        assert "stopped_at" in state and "started_at" in state
        assert result.spooled >= 1 and result.spool_pending == 0
        assert spool_status(settings.client.spool_dir).files == 0
        expected = sum(int(v["artifacts"]) for v in result.pipelines.values())
        assert expected == len(COLORS) + 1
        scenes = await store.artifacts(result.asset_id, artifact_type="scene",
                                       run_id=f"{result.job_id}-scenes")
        assert [s.payload["index"] for s in scenes] == list(range(len(COLORS)))
        assert len({s.artifact_id for s in scenes}) == len(COLORS)
        found = await store.count_artifacts(result.asset_id)
        assert found == expected  # zero lost, none twice
        run = await store.get_run(f"{result.job_id}-scenes")
        assert run["status"] == "completed"
        log.info("PostgreSQL down %.2f s; %d batches, %d spooled, %d artifacts expected, %d "
                 "found", state["started_at"] - state["stopped_at"], state["batches"],
                 result.spooled, expected, found)
    finally:
        for t in tasks:
            t.cancel()
        await store.close()
