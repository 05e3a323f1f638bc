"""Jobs survive the client: detach then attach, and a client killed mid-job, then attach.

Either way every artifact ends up in the store exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from rtc_annotator.client.jobs import JobRegistry, JobStatus
from rtc_annotator.client.submit import attach_job, submit_video
from rtc_annotator.config import Settings
from rtc_annotator.store import Store

from .conftest import MakeSettings, StartWorker, fast_link

COLORS = ("red", "blue") * 6
SLOW_SCENES = {"scenes": {"downscale_width": 0, "min_scene_len_ms": 200}}


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}


async def _assert_exactly_once(store: Store, asset_id: str, job_id: str) -> None:
    scenes = await store.artifacts(asset_id, artifact_type="scene", run_id=f"{job_id}-scenes")
    meta = await store.artifacts(asset_id, artifact_type="video.metadata",
                                 run_id=f"{job_id}-metadata")
    assert [s.payload["index"] for s in scenes] == list(range(len(COLORS)))
    assert len({s.artifact_id for s in scenes}) == len(COLORS) and len(meta) == 1
    assert (await store.get_run(f"{job_id}-scenes"))["status"] == "completed"


async def test_detach_then_attach(
    make_video: Callable[..., Path], make_settings: MakeSettings, start_worker: StartWorker
) -> None:
    video = make_video(colors=COLORS, seconds_each=1.0, size="1280x720")
    await start_worker("gpu-d")
    settings = make_settings("laptop-d", role="client")
    store = await Store.open(settings.database.url)
    try:
        r1 = await submit_video(settings, video, store=store, pipelines=["metadata", "scenes"],
                                options=SLOW_SCENES, link_options=fast_link(), detach=True)
        assert r1.detached and not r1.ok and r1.error is None, r1
        assert r1.worker == "gpu-d" and r1.transfer == "rtc" and r1.artifacts == 0
        registry = JobRegistry(settings.client.jobs_path())
        record = await registry.get(r1.job_id)
        assert record.status is JobStatus.DETACHED and record.worker == "gpu-d"
        assert (await store.get_run(f"{r1.job_id}-scenes"))["status"] == "running"

        r2 = await attach_job(settings, r1.job_id, store=store, link_options=fast_link())
        assert r2.ok, r2.error
        assert r2.artifacts == len(COLORS) + 1
        await _assert_exactly_once(store, r1.asset_id, r1.job_id)
        record = await registry.get(r1.job_id)
        assert record.status is JobStatus.DONE and record.last_acked_seq >= 1

        # the job was acknowledged in full: the worker forgot it
        r3 = await attach_job(settings, r1.job_id, store=store, link_options=fast_link())
        assert not r3.ok and r3.error is not None and r3.error.code == "UNKNOWN_JOB"
    finally:
        await store.close()


def _client_config(path: Path, settings: Settings) -> Path:
    path.write_text(tomli_w.dumps({
        "signaling": {"url": settings.signaling.url, "token": settings.signaling.token},
        "client": {"spool_dir": str(settings.client.spool_dir),
                   "jobs_dir": str(settings.client.jobs_path())},
        "database": {"url": settings.database.url},
        "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
    }))
    return path


async def _wait_first_batch(registry: JobRegistry, proc: Any) -> str:
    for _ in range(1200):
        for record in await registry.list():
            if record.last_acked_seq >= 1:
                return record.job_id
        assert proc.returncode is None, "the client ended before its first batch"
        await asyncio.sleep(0.025)
    raise AssertionError("no batch was stored")


async def _run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtc_annotator", *args, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=_env())
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_client_killed_mid_job_then_attach(
    tmp_path: Path, make_video: Callable[..., Path], make_settings: MakeSettings,
    start_worker: StartWorker,
) -> None:
    video = make_video(colors=COLORS, seconds_each=1.0, size="1280x720")
    await start_worker("gpu-k")
    settings = make_settings("laptop-k", role="client")
    cfg = _client_config(tmp_path / "client.toml", settings)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtc_annotator", "submit", str(video), "--config", str(cfg),
        "--pipelines", "metadata,scenes", "--options", json.dumps(SLOW_SCENES), "--json",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    registry = JobRegistry(settings.client.jobs_path())
    try:
        job_id = await _wait_first_batch(registry, proc)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    record = await registry.get(job_id)
    assert record.status is JobStatus.RUNNING and record.worker == "gpu-k"

    code, out, err = await _run_cli("jobs", "list", "--config", str(cfg), "--json")
    assert code == 0, err
    assert [j["job_id"] for j in json.loads(out)] == [job_id]

    code, out, err = await _run_cli("jobs", "attach", job_id, "--config", str(cfg), "--json")
    assert code == 0, err + out
    result = json.loads(out)
    assert result["ok"] and result["worker"] == "gpu-k"
    store = await Store.open(settings.database.url)
    try:
        await _assert_exactly_once(store, record.asset_id, job_id)
    finally:
        await store.close()
    assert (await registry.get(job_id)).status is JobStatus.DONE


async def test_ctrl_c_without_a_terminal_leaves_the_job_running(
    tmp_path: Path, make_video: Callable[..., Path], make_settings: MakeSettings,
    start_worker: StartWorker,
) -> None:
    video = make_video(colors=COLORS, seconds_each=1.0, size="1280x720")
    await start_worker("gpu-i")
    settings = make_settings("laptop-i", role="client")
    cfg = _client_config(tmp_path / "client.toml", settings)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtc_annotator", "submit", str(video), "--config", str(cfg),
        "--pipelines", "metadata,scenes", "--options", json.dumps(SLOW_SCENES),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    registry = JobRegistry(settings.client.jobs_path())
    job_id = await _wait_first_batch(registry, proc)
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == 130, err.decode()
    assert f"rtc-annotator jobs attach {job_id}" in err.decode()
    assert "Traceback" not in err.decode()
    assert (await registry.get(job_id)).status is JobStatus.INTERRUPTED
    store = await Store.open(settings.database.url)
    try:
        result = await attach_job(settings, job_id, store=store, link_options=fast_link())
        assert result.ok, result.error
        await _assert_exactly_once(store, result.asset_id, job_id)
    finally:
        await store.close()
