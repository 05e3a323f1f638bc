"""`rtc-annotator pool` on the real test cluster: from 0 workers to N when route requests queue,
never more than max_workers, found again by a restarted pool, back to min_workers when idle."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from rtc_annotator.client.submit import submit_video
from rtc_annotator.config import Settings
from rtc_annotator.pool.service import PoolService
from rtc_annotator.store import Store
from signaling.app import SignalingServer

from .conftest import Jobs, online, wait_for, worker_toml
from .test_slurm_workers import client_settings, link


def pool_settings(tmp: Path, url: str, admin: str, template: Path, **pool: Any) -> Path:
    path = tmp / "pool.toml"
    path.write_text(tomli_w.dumps({
        "signaling": {"url": url, "token": admin, "heartbeat_s": 0.5, "reconnect_max_s": 1.0},
        "pool": {"templates": [str(template)], "state_dir": str(tmp / "pool-state"), **pool},
    }))
    path.chmod(0o600)
    return path


async def test_pool_follows_the_queue(
    tmp_path: Path, jobs: Jobs, signaling_server: SignalingServer,
    room_tokens: dict[str, str], make_video: Callable[..., Path], monkeypatch: Any,
) -> None:
    url, admin = signaling_server.url, room_tokens["admin"]
    template = worker_toml(tmp_path / "w" / "worker.toml", url, room_tokens["worker"])
    config = pool_settings(tmp_path, url, admin, template, min_workers=0, max_workers=2,
                           idle_exit_s=3.0, poll_s=0.5)
    for key, value in jobs.env.items():  # sbatch reaches the test cluster, workers the venv
        monkeypatch.setenv(key, value)
    from rtc_annotator.config import load_settings

    settings = load_settings(config, env={})
    stop = asyncio.Event()
    pool = PoolService(settings)
    pool_task = asyncio.create_task(pool.run(stop))
    most = 0

    async def watch() -> None:  # the pool never has more than max_workers jobs
        nonlocal most
        while True:
            most = max(most, len(await asyncio.to_thread(jobs.alive, "rtcpool.")))
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    client = client_settings(tmp_path, url, room_tokens["client"])
    store = await Store.open(client.database.url)
    videos = [make_video(colors=c, seconds_each=1.0) for c in
              (("red", "green"), ("blue", "yellow"), ("white", "black"))]
    try:
        await wait_for(lambda: pool.room, "the pool to start")
        assert await online(url, admin) == {}
        queued_at = time.monotonic()
        results = await asyncio.gather(*(
            submit_video(client, v, store=store, pipelines=["metadata"], link_options=link())
            for v in videos))
        assert all(r.ok for r in results), [r.error for r in results]
        workers = {r.worker for r in results}
        assert 1 <= len(workers) <= 2
        submitted = [e for e in pool.events if e["action"] == "submitted"]
        assert [e["kind"] for e in submitted] == ["burst"] * len(submitted)
        assert 1 <= len(submitted) <= 2
        came = [e for e in pool.events if e["action"] == "online"]
        assert {e["job_id"] for e in came} == {e["job_id"] for e in submitted}
        queued_wall = time.time() - (time.monotonic() - queued_at)
        print(f"\n3 queued jobs -> {len(submitted)} worker(s) submitted after "
              f"{min(e['at'] for e in submitted) - queued_wall:.1f} s, online after "
              + ", ".join(f"{e['at'] - queued_wall:.1f} s" for e in came)
              + f" (sbatch -> online {', '.join(str(e['after_s']) for e in came)} s); "
              f"all jobs done after {time.monotonic() - queued_at:.1f} s")

        # idle workers exit by themselves; the pool goes back to min_workers (0)
        await wait_for(lambda: not jobs.alive("rtcpool."), "the idle workers to exit",
                       limit_s=60)
        await wait_for(lambda: _status(settings)["jobs"] == [], "pool status without jobs",
                       limit_s=10)
        assert await online(url, admin) == {}
    finally:
        watcher.cancel()
        stop.set()
        await asyncio.gather(pool_task, watcher, return_exceptions=True)
        await store.close()
    assert most <= 2
    status = _status(settings)
    assert status["room"] == "lab" and status["max_workers"] == 2
    assert any(e["action"] == "policy" for e in status["events"])
    shown = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "rtc_annotator", "pool", "status",
                            "--config", str(config)], capture_output=True, text=True,
                           timeout=60, env={k: v for k, v in os.environ.items()
                                            if not k.startswith("RTC_ANNOTATOR_")})
    assert shown.returncode == 0, shown.stderr
    assert "pool for room lab" in shown.stdout and "submitted" in shown.stdout


async def test_restarted_pool_finds_its_jobs_and_keeps_min_workers(
    tmp_path: Path, jobs: Jobs, signaling_server: SignalingServer,
    room_tokens: dict[str, str], monkeypatch: Any,
) -> None:
    url, admin = signaling_server.url, room_tokens["admin"]
    template = worker_toml(tmp_path / "w" / "worker.toml", url, room_tokens["worker"])
    config = pool_settings(tmp_path, url, admin, template, min_workers=1, max_workers=2,
                           idle_exit_s=3.0, poll_s=0.5)
    for key, value in jobs.env.items():
        monkeypatch.setenv(key, value)
    from rtc_annotator.config import load_settings

    settings = load_settings(config, env={})
    # one round of the command an operator runs: it submits the base worker and exits
    first = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "rtc_annotator", "--log-level", "INFO", "pool",
                         "run", "--once", "--config", str(config)],
        capture_output=True, text=True, timeout=60, env=jobs.env)
    assert first.returncode == 0, first.stderr
    assert "pool submitted" in first.stderr and "kind=base" in first.stderr
    (job,) = [j[0] for j in jobs.alive("rtcpool.lab.worker.base")]
    jobs.ids.append(job)
    assert f"job_id={job}" in first.stderr

    # a new pool process: it finds the base job with squeue and submits nothing more
    second = PoolService(settings)
    await second.start()
    try:
        names = await wait_for(lambda: online(url, admin), "the base worker online", 60)
        plan = await second.step()
        assert plan.actions == ()
        # the base worker was started without idle exit: it stays past idle_exit_s
        await asyncio.sleep(4.0)
        assert set(await online(url, admin)) == set(names)
        assert [j[0] for j in jobs.alive("rtcpool.")] == [job]
    finally:
        await second.close()


def _status(settings: Settings) -> dict[str, Any]:
    return dict(json.loads((settings.pool.state_dir / "status.json").read_text()))
