"""`submit --worker NAME` and `--min-gpu-mem MB` reach the route request: the job goes to the
named worker (not the other, equally free one), and a GPU memory floor no CPU worker meets is a
clear failure naming the requirement."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import tomli_w

from .conftest import MakeSettings, StartWorker


async def _submit(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtc_annotator", "submit", *args, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_submit_worker_and_min_gpu_mem(
    tmp_path: Path, make_video, make_settings: MakeSettings, start_worker: StartWorker
) -> None:
    await start_worker("node-a")
    await start_worker("node-b")
    s = make_settings("laptop-choice", role="client")
    cfg = tmp_path / "client.toml"
    cfg.write_text(tomli_w.dumps({
        "signaling": {"url": s.signaling.url, "token": s.signaling.token},
        "client": {"spool_dir": str(s.client.spool_dir), "jobs_dir": str(s.client.jobs_path())},
        "database": {"url": s.database.url},
        "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
    }))
    video = make_video(colors=("red", "blue"), seconds_each=1.0)

    for name in ("node-b", "node-a"):
        code, out, err = await _submit(str(video), "--config", str(cfg), "--pipelines",
                                       "metadata", "--worker", name, "--json")
        assert code == 0, out + err
        assert json.loads(out)[0]["worker"] == name

    code, out, err = await _submit(str(video), "--config", str(cfg), "--pipelines", "metadata",
                                   "--worker", "node-zzz", "--json")
    assert code == 1
    assert "node-zzz" in out + err

    code, out, err = await _submit(str(video), "--config", str(cfg), "--pipelines", "metadata",
                                   "--min-gpu-mem", "1024", "--json")
    assert code == 1, out + err
    assert ">= 1024 MiB of GPU memory" in out + err

    code, out, err = await _submit(str(video), "--config", str(cfg), "--min-gpu-mem", "-5")
    assert code == 2 and "--min-gpu-mem" in err
