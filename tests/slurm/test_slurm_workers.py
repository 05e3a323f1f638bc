"""Workers as real SLURM jobs: the rendered script submitted with sbatch on the test cluster.

Each test prints what it measured (time from sbatch to online); the figures are reported in
docs/slurm.md, they are not asserted here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rtc_annotator.client.submit import submit_video
from rtc_annotator.config import Settings
from rtc_annotator.store import Store
from rtc_annotator.transport.peer import LinkOptions
from signaling.app import SignalingServer

from .conftest import (
    Jobs,
    job_field,
    let_requests_wait,
    log_text,
    online,
    render,
    wait_for,
    worker_toml,
)

COLORS = ("red", "blue") * 4  # 8 scenes, a hard cut every second
SLOW_SCENES = {"scenes": {"downscale_width": 0, "min_scene_len_ms": 200}}
HOST = socket.gethostname().split(".")[0]


def client_settings(tmp: Path, url: str, token: str) -> Settings:
    return Settings.model_validate({
        "signaling": {"url": url, "token": token, "heartbeat_s": 0.5, "reconnect_max_s": 1.0},
        "client": {"spool_dir": str(tmp / "client" / "spool")},
        "database": {"url": f"sqlite+aiosqlite:///{tmp / 'client' / 'store.sqlite3'}"},
        "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
    })


def link() -> LinkOptions:
    from rtc_annotator.config import IceSettings

    return LinkOptions(ice=IceSettings(servers=[], host_addresses=["127.0.0.1"]),
                       heartbeat_s=0.5, dead_after_s=4.0, connect_timeout_s=20.0)


async def workers_of(url: str, admin: str, job_ids: list[str]) -> dict[str, str]:
    """job id -> online worker name, for the given jobs."""
    names = await online(url, admin)
    found: dict[str, str] = {}
    for name in names:
        for job in job_ids:
            if re.fullmatch(rf"rtc-{re.escape(HOST)}-{job}(-r\d+)?", name):
                found[job] = name
    return found


async def start_workers(jobs: Jobs, script: Path, n: int, url: str,
                        admin: str) -> tuple[list[str], dict[str, str], float]:
    t0 = time.monotonic()
    ids = [jobs.submit(script) for _ in range(n)]

    async def all_online() -> dict[str, str] | None:
        found = await workers_of(url, admin, ids)
        return found if len(found) == n else None

    names = await wait_for(all_online, f"{n} workers online", limit_s=90)
    return ids, names, time.monotonic() - t0


async def test_n_jobs_are_n_workers_and_a_graceful_stop_completes(
    tmp_path: Path, jobs: Jobs, signaling_server: SignalingServer,
    room_tokens: dict[str, str], make_video: Callable[..., Path],
) -> None:
    url, admin = signaling_server.url, room_tokens["admin"]
    config = worker_toml(tmp_path / "w" / "worker.toml", url, room_tokens["worker"])
    script = render(config, tmp_path / "worker.sbatch")
    text = script.read_text()
    assert "--gres" not in text and "#SBATCH --cpus-per-task=1\n" in text

    ids, names, took = await start_workers(jobs, script, 3, url, admin)
    print(f"\nsbatch -> 3 workers online: {took:.1f} s")
    assert len(set(names.values())) == 3  # one worker per job, none replaced another

    video = make_video(colors=("red", "green"), seconds_each=1.0)
    settings = client_settings(tmp_path, url, room_tokens["client"])
    store = await Store.open(settings.database.url)
    try:
        result = await submit_video(settings, video, store=store, pipelines=["metadata"],
                                    link_options=link())
        assert result.ok, result.error
        assert result.worker in names.values()
        meta = await store.artifacts(result.asset_id, artifact_type="video.metadata")
        assert len(meta) == 1
    finally:
        await store.close()

    # a graceful stop: SIGTERM to the batch shell, the worker leaves, SLURM records COMPLETED
    job = ids[0]
    await asyncio.to_thread(subprocess.run, ["scancel", "--batch", "--signal=TERM", job],
                            env=jobs.env, check=True, timeout=30)

    async def gone() -> bool:
        return names[job] not in await online(url, admin)

    await wait_for(gone, f"worker {names[job]} to leave", limit_s=30)
    await wait_for(lambda: job_field(jobs.env, job, "JobState") == "COMPLETED",
                   f"job {job} COMPLETED", limit_s=30)
    assert job_field(jobs.env, job, "ExitCode") == "0:0"
    log = log_text(config.parent / "logs", job)
    assert "INFO" in log and "worker registered" in log, log
    assert f"worker {names[job]} exited with status 0" in log, log


async def test_scancel_of_a_busy_worker_reroutes_its_job(
    tmp_path: Path, jobs: Jobs, signaling_server: SignalingServer,
    room_tokens: dict[str, str], make_video: Callable[..., Path],
) -> None:
    url, admin = signaling_server.url, room_tokens["admin"]
    await let_requests_wait(url, admin)
    config = worker_toml(tmp_path / "w" / "worker.toml", url, room_tokens["worker"])
    script = render(config, tmp_path / "worker.sbatch")
    ids, names, _took = await start_workers(jobs, script, 2, url, admin)
    by_name = {v: k for k, v in names.items()}

    video = make_video(colors=COLORS, seconds_each=1.0, size="960x540")
    settings = client_settings(tmp_path, url, room_tokens["client"])
    store = await Store.open(settings.database.url)
    seen: dict[str, Any] = {"routed": [], "cancelled": None}
    procs: list[subprocess.Popen[bytes]] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "routed":
            seen["routed"].append(data["worker"])
        elif kind == "artifacts" and seen["cancelled"] is None:
            # a plain scancel: SLURM signals every process of the job, SIGKILL after KillWait
            seen["cancelled"] = by_name[seen["routed"][0]]
            procs.append(subprocess.Popen(["scancel", seen["cancelled"]], env=jobs.env))

    try:
        result = await submit_video(settings, video, store=store,
                                    pipelines=["metadata", "scenes"], options=SLOW_SCENES,
                                    link_options=dataclasses.replace(link()), on_event=on_event)
        assert result.ok, result.error
        first, second = seen["routed"]
        assert first != second and {first, second} <= set(names.values())
        assert [r["worker"] for r in result.reroutes] == [first]
        scenes = await store.artifacts(result.asset_id, artifact_type="scene",
                                       run_id=f"{result.job_id}-scenes")
        assert [s.payload["index"] for s in scenes] == list(range(len(COLORS)))
        run = await store.get_run(f"{result.job_id}-scenes")
        assert (run["status"], run["worker"]) == ("completed", second)
    finally:
        await store.close()
        for proc in procs:
            proc.wait(timeout=30)


async def test_requeued_worker_comes_back_under_a_new_name_and_takes_the_job_again(
    tmp_path: Path, jobs: Jobs, signaling_server: SignalingServer,
    room_tokens: dict[str, str], make_video: Callable[..., Path],
) -> None:
    url, admin = signaling_server.url, room_tokens["admin"]
    await let_requests_wait(url, admin)  # while the only worker is requeued

    config = worker_toml(tmp_path / "w" / "worker.toml", url, room_tokens["worker"])
    script = render(config, tmp_path / "worker.sbatch")
    (job,), names, _took = await start_workers(jobs, script, 1, url, admin)
    first_name = names[job]
    assert first_name == f"rtc-{HOST}-{job}"

    video = make_video(colors=COLORS, seconds_each=1.0, size="960x540")
    settings = client_settings(tmp_path, url, room_tokens["client"])
    store = await Store.open(settings.database.url)
    seen: dict[str, Any] = {"routed": [], "requeued": False}
    procs: list[subprocess.Popen[bytes]] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "routed":
            seen["routed"].append(data["worker"])
            seen["routed_at"] = time.monotonic()
        elif kind == "rerouted":
            seen["rerouted_at"] = time.monotonic()
        elif kind == "artifacts" and not seen["requeued"]:
            seen["requeued"] = time.monotonic()
            procs.append(subprocess.Popen(["scontrol", "requeue", job], env=jobs.env))

    try:
        result = await submit_video(settings, video, store=store,
                                    pipelines=["metadata", "scenes"], options=SLOW_SCENES,
                                    link_options=link(), on_event=on_event)
        print(f"\nrequeue -> client told: {seen['rerouted_at'] - seen['requeued']:.1f} s, "
              f"-> routed to the requeued worker: {seen['routed_at'] - seen['requeued']:.1f} s")
        assert result.ok, result.error
        assert seen["routed"] == [first_name, f"{first_name}-r1"]
        assert [r["worker"] for r in result.reroutes] == [first_name]
        scenes = await store.artifacts(result.asset_id, artifact_type="scene",
                                       run_id=f"{result.job_id}-scenes")
        assert [s.payload["index"] for s in scenes] == list(range(len(COLORS)))
    finally:
        await store.close()
        for proc in procs:
            proc.wait(timeout=30)
    assert job_field(jobs.env, job, "Restarts") == "1"
    assert first_name not in await online(url, admin)
