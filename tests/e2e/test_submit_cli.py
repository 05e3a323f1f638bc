"""`rtc-annotator submit` through its real entry point, without a terminal: progress lines on
stderr, the summary table on stdout, and `--json` output that parses."""

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


async def test_submit_progress_summary_and_json(
    tmp_path: Path, make_video, make_settings: MakeSettings, start_worker: StartWorker
) -> None:
    await start_worker("gpu-cli")
    s = make_settings("laptop-cli", role="client")
    cfg = tmp_path / "client.toml"
    cfg.write_text(tomli_w.dumps({
        "signaling": {"url": s.signaling.url, "token": s.signaling.token},
        "client": {"spool_dir": str(s.client.spool_dir), "jobs_dir": str(s.client.jobs_path())},
        "database": {"url": s.database.url},
        "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
    }))
    video = make_video(colors=("red", "blue"), seconds_each=1.0)

    code, out, err = await _submit(str(video), "--config", str(cfg), "--pipelines",
                                   "metadata,scenes")
    assert code == 0, out + err
    assert "Traceback" not in err
    assert "routed to gpu-cli" in err                 # progress/log lines go to stderr
    assert "\x1b[" not in err                         # no terminal control codes when piped
    row = next(line for line in out.splitlines() if video.name in line)
    assert "gpu-cli" in row and "rtc" in row and "ok" in row

    code, out, err = await _submit(str(video), "--config", str(cfg), "--pipelines", "scenes",
                                   "--json")
    assert code == 0, out + err
    results = json.loads(out)
    assert len(results) == 1
    r = results[0]
    assert r["ok"] is True and r["worker"] == "gpu-cli"
    assert r["transfer"] == "cached" and r["sent_bytes"] == 0
    assert r["pipelines"]["scenes"]["artifacts"] == 2

    code, out, err = await _submit(str(tmp_path / "missing.mp4"), "--config", str(cfg))
    assert code == 2
    assert err.startswith("error: VIDEO_ERROR") and err.count("\n") == 1
