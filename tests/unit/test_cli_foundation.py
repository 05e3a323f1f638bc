"""The foundation CLI commands, run as a user would run them (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    full_env.pop("SHARED_STORAGE_ROOT", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "rtc_annotator", *args],
        capture_output=True, text=True, env=full_env, timeout=60,
    )


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    (tmp_path / "vast" / "alice" / "clips").mkdir(parents=True)
    (tmp_path / "vast" / "alice" / "clips" / "a.mp4").write_bytes(b"video")
    path = tmp_path / "worker.toml"
    path.write_text(f'[storage.vast]\nbase_path = "{tmp_path}/vast"\ntype = "vast"\n')
    return path


def test_storage_resolve_ok(config: Path, tmp_path: Path) -> None:
    r = cli("storage", "resolve", "--config", str(config), "--backend", "vast",
            "--user-subdir", "alice", "clips/a.mp4")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{tmp_path}/vast/alice/clips/a.mp4\n"
    assert r.stderr == ""


@pytest.mark.parametrize(
    ("backend", "relpath", "code"),
    [
        ("vast", "../../etc/passwd", "PATH_ERROR"),
        ("vast", "/etc/passwd", "PATH_ERROR"),
        ("s3", "clips/a.mp4", "BACKEND_NOT_AVAILABLE"),
    ],
)
def test_storage_resolve_rejected(config: Path, backend: str, relpath: str, code: str) -> None:
    r = cli("storage", "resolve", "--config", str(config), "--backend", backend,
            "--user-subdir", "alice", relpath)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and code in r.stderr
    assert "Traceback" not in r.stderr


def test_storage_to_relative_and_list(config: Path, tmp_path: Path) -> None:
    r = cli("storage", "to-relative", "--config", str(config), "--json",
            str(tmp_path / "vast" / "alice" / "clips" / "a.mp4"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "storage_backend": "vast", "user_subdir": "alice", "relative_path": "clips/a.mp4",
    }
    r = cli("storage", "to-relative", "--config", str(config), "/not/on/a/backend.mp4")
    assert r.returncode == 2 and "NOT_UNDER_BACKEND" in r.stderr
    r = cli("storage", "list", "--config", str(config), "--json")
    rows = json.loads(r.stdout)
    assert [(x["name"], x["type"], x["exists"]) for x in rows] == [("vast", "vast", "yes")]


def test_config_check(config: Path, tmp_path: Path) -> None:
    ok = cli("config", "check", "--config", str(config))
    assert ok.returncode == 0 and "valid" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[worker]\njob_slot = 2\n")
    r = cli("config", "check", "--config", str(bad))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1
    assert str(bad) in r.stderr and "[worker] job_slot" in r.stderr and "job_slots" in r.stderr
    assert "Traceback" not in r.stderr


def test_config_show_hides_secrets(config: Path) -> None:
    r = cli("config", "show", "--config", str(config), "--json",
            env={"RTC_ANNOTATOR_SIGNALING_TOKEN": "supersecret"})
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["signaling"]["token"] == "<set>"
    assert "supersecret" not in r.stdout
    assert data["storage"]["vast"]["type"] == "vast"


def test_shared_storage_root_via_cli(tmp_path: Path) -> None:
    (tmp_path / "u").mkdir()
    r = cli("storage", "resolve", "--backend", "default", "--user-subdir", "u", "x.mp4",
            env={"SHARED_STORAGE_ROOT": str(tmp_path), "RTC_ANNOTATOR_CONFIG": ""})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "u" / "x.mp4")


def test_help_everywhere() -> None:
    for args in (["--help"], ["config", "--help"], ["storage", "--help"],
                 ["storage", "resolve", "--help"]):
        r = cli(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert "Usage" in r.stdout
