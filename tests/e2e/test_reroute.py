"""A worker killed with SIGKILL mid-job: the client notices, routes the job to the other
worker and completes it; every artifact is in the store exactly once.

The workers are real ``rtc-annotator worker`` processes (each in its own process group, so the
kill takes the job's child process with it, as when a node dies)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from rtc_annotator.client.jobs import JobRegistry, JobStatus
from rtc_annotator.client.submit import submit_video
from rtc_annotator.store import Store
from rtc_annotator.transport.peer import LinkOptions
from signaling.app import SignalingServer

from .conftest import MakeSettings, fast_link, wait_online


def quick_link() -> LinkOptions:
    """The client declares a silent worker gone after 4 s (workers PING every 2 s)."""
    return dataclasses.replace(fast_link(), dead_after_s=4.0)

COLORS = ("red", "blue") * 6  # 12 scenes, a hard cut every second
SLOW_SCENES = {"scenes": {"downscale_width": 0, "min_scene_len_ms": 200}}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    return {**env, "PYTHONUNBUFFERED": "1", "YOLO_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


class WorkerProcs:
    """``rtc-annotator worker`` processes, each in its own session (process group)."""

    def __init__(self, tmp: Path, url: str, token: str) -> None:
        self.tmp, self.url, self.token = tmp, url, token
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        cfg = self.tmp / f"{name}.toml"
        cfg.write_text(tomli_w.dumps({
            "signaling": {"url": self.url, "token": self.token, "heartbeat_s": 0.5,
                          "reconnect_max_s": 1.0},
            "worker": {"name": name, "cache_dir": str(self.tmp / name / "cache"),
                       "job_slots": 1, "shutdown_grace_s": 2.0},
            "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
        }))
        with (self.tmp / f"{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "rtc_annotator", "--log-level", "INFO", "worker",
                 "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=_env(),
                start_new_session=True)

    def kill9(self, name: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, signal.SIGKILL)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@pytest.fixture
async def worker_procs(tmp_path: Path, signaling_server: SignalingServer,
                       room_tokens: dict[str, str]) -> AsyncIterator[WorkerProcs]:
    procs = WorkerProcs(tmp_path, signaling_server.url, room_tokens["worker"])
    try:
        yield procs
    finally:
        await asyncio.to_thread(procs.stop)


async def test_sigkilled_worker_mid_job_is_replaced(
    tmp_path: Path, make_video: Callable[..., Path], make_settings: MakeSettings,
    worker_procs: WorkerProcs, signaling_server: SignalingServer,
    room_tokens: dict[str, str],
) -> None:
    video = make_video(colors=COLORS, seconds_each=1.0, size="1280x720")
    for name in ("node-a", "node-b"):
        worker_procs.start(name)
    await wait_online(signaling_server.url, room_tokens["admin"], {"node-a", "node-b"})
    settings = make_settings("laptop-rr", role="client")
    store = await Store.open(settings.database.url)
    loop = asyncio.get_running_loop()
    seen: dict[str, Any] = {"routed": [], "killed_at": None, "told_at": None}

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "routed":
            seen["routed"].append(data["worker"])
        elif kind == "artifacts" and seen["killed_at"] is None:
            worker_procs.kill9(seen["routed"][0])  # dies with the job half done
            seen["killed_at"] = loop.time()
        elif kind == "rerouted":
            seen["told_at"] = loop.time()

    try:
        result = await submit_video(settings, video, store=store,
                                    pipelines=["metadata", "scenes"], options=SLOW_SCENES,
                                    link_options=quick_link(), on_event=on_event)
        assert result.ok, result.error
        first, second = seen["routed"]
        assert {first, second} == {"node-a", "node-b"}
        assert result.worker == second
        assert [r["worker"] for r in result.reroutes] == [first]
        assert result.reroutes[0]["to"] == second
        assert seen["told_at"] - seen["killed_at"] < 15.0  # the bound, not a speed claim
        # exactly once: the first worker's partial batches and the full rerun share ids
        scenes = await store.artifacts(result.asset_id, artifact_type="scene",
                                       run_id=f"{result.job_id}-scenes")
        meta = await store.artifacts(result.asset_id, artifact_type="video.metadata",
                                     run_id=f"{result.job_id}-metadata")
        assert [s.payload["index"] for s in scenes] == list(range(len(COLORS)))
        assert len({s.artifact_id for s in scenes}) == len(COLORS) and len(meta) == 1
        assert result.pipelines["scenes"]["artifacts"] == len(COLORS)
        run = await store.get_run(f"{result.job_id}-scenes")
        assert (run["status"], run["worker"]) == ("completed", second)
        record = await JobRegistry(settings.client.jobs_path()).get(result.job_id)
        assert record.status is JobStatus.DONE and record.reroutes == [first]
    finally:
        await store.close()


async def test_no_other_worker_fails_cleanly_after_max_reroutes(
    tmp_path: Path, make_video: Callable[..., Path], make_settings: MakeSettings,
    worker_procs: WorkerProcs, signaling_server: SignalingServer,
    room_tokens: dict[str, str],
) -> None:
    video = make_video(colors=COLORS, seconds_each=1.0, size="1280x720")
    worker_procs.start("lonely")
    await wait_online(signaling_server.url, room_tokens["admin"], {"lonely"})
    settings = make_settings("laptop-rr2", role="client")
    store = await Store.open(settings.database.url)
    killed: list[bool] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "artifacts" and not killed:
            worker_procs.kill9("lonely")
            killed.append(True)

    try:
        result = await submit_video(settings, video, store=store,
                                    pipelines=["metadata", "scenes"], options=SLOW_SCENES,
                                    link_options=quick_link(), on_event=on_event)
        assert not result.ok and result.error is not None
        assert result.error.code == "NO_MATCHING_WORKER", result.error
        assert [r["worker"] for r in result.reroutes] == ["lonely"]
        run = await store.get_run(f"{result.job_id}-scenes")
        assert run["status"] == "failed"
    finally:
        await store.close()
