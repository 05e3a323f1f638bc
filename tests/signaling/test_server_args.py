"""The signaling server takes any secret, from the environment or a file, never only argv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from signaling.__main__ import parse_args

DASH_SECRET = "-Xk3_secret-that-looks-like-an-option"


def test_admin_secret_from_environment_may_begin_with_dash(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIGNALING_ADMIN_SECRET", DASH_SECRET)
    monkeypatch.setenv("SIGNALING_TURN_SECRET", "-turn")
    cfg = parse_args(["--state", str(tmp_path / "s.sqlite3"), "--turn", "turn:127.0.0.1:3478"])
    assert cfg.admin_secret == DASH_SECRET
    assert cfg.ice.turn_secret == "-turn"


def test_secrets_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SIGNALING_ADMIN_SECRET", raising=False)
    monkeypatch.delenv("SIGNALING_TURN_SECRET", raising=False)
    (tmp_path / "admin").write_text(DASH_SECRET + "\n")
    (tmp_path / "turn").write_text("-t s\n")
    cfg = parse_args(["--admin-secret-file", str(tmp_path / "admin"),
                      "--turn-secret-file", str(tmp_path / "turn"),
                      "--turn", "turn:127.0.0.1:3478"])
    assert cfg.admin_secret == DASH_SECRET
    assert cfg.ice.turn_secret == "-t s"


def test_equals_form_takes_a_dash_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNALING_ADMIN_SECRET", raising=False)
    assert parse_args([f"--admin-secret={DASH_SECRET}"]).admin_secret == DASH_SECRET


@pytest.mark.parametrize("content", ["", "\n"])
def test_empty_secret_file_is_a_usage_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "admin").write_text(content)
    r = subprocess.run([sys.executable, "-m", "signaling", "--admin-secret-file",
                        str(tmp_path / "admin")], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert "is empty" in r.stderr and str(tmp_path / "admin") in r.stderr


def test_missing_secret_names_both_ways(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "signaling", "--state", str(tmp_path / "s")],
                       capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert "SIGNALING_ADMIN_SECRET" in r.stderr and "--admin-secret-file" in r.stderr
