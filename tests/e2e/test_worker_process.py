"""The worker and annotate commands as processes: SIGTERM leaves cleanly; annotate stores."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import tomli_w

from rtc_annotator.store import Store
from signaling.app import SignalingServer

from .conftest import wait_online


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}


async def test_sigterm_unregisters_and_exits_zero(
    tmp_path: Path, signaling_server: SignalingServer, room_tokens: dict[str, str]
) -> None:
    cfg = tmp_path / "worker.toml"
    cfg.write_text(tomli_w.dumps({
        "signaling": {"url": signaling_server.url, "token": room_tokens["worker"]},
        "worker": {"name": "node-1", "cache_dir": str(tmp_path / "cache"),
                   "shutdown_grace_s": 2.0},
        "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
    }))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtc_annotator", "--log-level", "INFO", "worker", "--config",
        str(cfg), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env())
    try:
        await wait_online(signaling_server.url, room_tokens["admin"], {"node-1"})
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()
        text = out.decode()
        assert "worker registered" in text and "worker stopped" in text
        assert "Traceback" not in text
        await wait_online(signaling_server.url, room_tokens["admin"], {"node-1"}, present=False)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_worker_without_token_is_a_clear_error(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "rtc_annotator", "worker"], capture_output=True,
                       text=True, timeout=60, env={**_env(), "HOME": str(tmp_path)})
    assert r.returncode == 2
    assert "token is not set" in r.stderr and "Traceback" not in r.stderr


async def test_annotate_stores_scenes(tmp_path: Path, make_video) -> None:
    db = tmp_path / "store.sqlite3"
    video = make_video(colors=("red", "blue"), seconds_each=1.0)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtc_annotator", "annotate", str(video), "--pipelines",
        "metadata,scenes", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**_env(), "RTC_ANNOTATOR_DATABASE_URL": f"sqlite+aiosqlite:///{db}"})
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out)
    assert summary["status"] == "completed"
    assert summary["counts"] == {"metadata": 1, "scenes": 2}
    store = await Store.open(f"sqlite+aiosqlite:///{db}")
    try:
        scenes = await store.artifacts(summary["asset_id"], artifact_type="scene")
        assert [(s.span_start_ms, s.span_end_ms) for s in scenes] == [(0, 1000), (1000, 2000)]
        run = await store.get_run(summary["runs"]["scenes"])
        assert run["status"] == "completed"
    finally:
        await store.close()
