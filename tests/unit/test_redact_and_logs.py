"""Credentials never reach an output or a log: URL passwords and registered secrets become ***;
`--log-format json` writes one JSON object per line; RTC_ANNOTATOR_LOG_LEVEL sets the level."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtc_annotator import logs, redact


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    redact.forget_secrets()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
    ("postgresql+asyncpg://lab:p%40ss@db.example.org:5432/store",
     "postgresql+asyncpg://lab:***@db.example.org:5432/store"),
    ("ws://127.0.0.1:8765/ws", "ws://127.0.0.1:8765/ws"),
    ("sqlite+aiosqlite:////home/u/store.sqlite3", "sqlite+aiosqlite:////home/u/store.sqlite3"),
    ("https://x.org/api?token=abc123&page=2", "https://x.org/api?token=***&page=2"),
    ("turn://user:@h", "turn://user:***@h"),
])
def test_mask_url(url: str, shown: str) -> None:
    assert redact.mask_url(url) == shown


def test_mask_text_with_urls_and_registered_secrets() -> None:
    redact.register_secret("rtca1.room-token.sig")
    redact.register_secret("ab")  # too short to mask safely: ignored
    text = ("cannot reach postgresql://u:hunter2@h/db with token rtca1.room-token.sig; "
            "abc stays")
    out = redact.mask(text)
    assert "hunter2" not in out and "rtca1.room-token.sig" not in out
    assert "postgresql://u:***@h/db" in out and "token ***;" in out and "abc stays" in out


def test_text_log_lines_are_masked() -> None:
    redact.register_secret("s3cret-admin")
    stream = io.StringIO()
    logs.configure("INFO", stream)
    logs.get_logger("t").info("store at postgresql://u:pw@h/db", ctx={"admin": "s3cret-admin"})
    line = stream.getvalue()
    assert "pw@" not in line and "s3cret-admin" not in line
    assert "postgresql://u:***@h/db" in line and "admin=***" in line


def test_json_log_lines() -> None:
    stream = io.StringIO()
    logs.configure("DEBUG", stream, fmt="json")
    logs.get_logger("rtc_annotator.worker", job="3f2a").info(
        "job accepted", ctx={"peer": "lap top", "slots": 2, "url": "postgresql://u:pw@h/d"})
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "INFO" and first["logger"] == "rtc_annotator.worker"
    assert first["msg"] == "job accepted"                 # context is not glued to msg
    assert first["job"] == "3f2a" and first["peer"] == "lap top" and first["slots"] == 2
    assert first["url"] == "postgresql://u:***@h/d"
    assert first["ts"].endswith("Z")
    assert second["msg"] == "failed" and "ValueError: boom" in second["exc"]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text or json"):
        logs.configure("INFO", io.StringIO(), fmt="xml")


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    return subprocess.run([sys.executable, "-m", "rtc_annotator", *args], capture_output=True,
                          text=True, timeout=60, env={**base, **env})


def test_cli_log_level_and_format_from_environment(tmp_path: Path) -> None:
    env = {"RTC_ANNOTATOR_CONFIG": os.devnull, "RTC_ANNOTATOR_LOG_LEVEL": "DEBUG",
           "RTC_ANNOTATOR_LOG_FORMAT": "json",
           "RTC_ANNOTATOR_DATABASE_URL": "postgresql://lab:hunter2@127.0.0.1:1/db"}
    r = _cli("config", "show", "--json", env=env)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["database"]["url"] == "postgresql+asyncpg://lab:***@127.0.0.1:1/db"
    assert "hunter2" not in r.stdout + r.stderr
    r = _cli("--log-format", "yaml", "config", "check", env={"RTC_ANNOTATOR_CONFIG": os.devnull})
    assert r.returncode == 2 and "--log-format" in r.stderr


def test_config_show_toml_masks_and_doctor_masks(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[database]\nurl = "postgresql://lab:hunter2@127.0.0.1:1/db"\n'
                   '[signaling]\ntoken = "rtca1.abcdef.ghijkl"\n')
    r = _cli("config", "show", "--config", str(cfg), env={})
    assert r.returncode == 0, r.stderr
    assert 'url = "postgresql+asyncpg://lab:***@127.0.0.1:1/db"' in r.stdout
    assert "hunter2" not in r.stdout and "rtca1.abcdef" not in r.stdout
    r = _cli("doctor", "--config", str(cfg), "--json", "--timeout", "2", env={})
    assert r.returncode == 1, r.stdout + r.stderr        # the database check fails
    assert "hunter2" not in r.stdout + r.stderr and "rtca1.abcdef" not in r.stdout + r.stderr


def test_job_processes_follow_the_format_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI exports RTC_ANNOTATOR_LOG_FORMAT; a worker's job process (spawned, so it reads the
    environment) configures itself with the level only and still logs JSON."""
    monkeypatch.setenv(logs.FORMAT_ENV, "json")
    stream = io.StringIO()
    logs.configure("INFO", stream)
    logging.getLogger("child").info("hello")
    assert json.loads(stream.getvalue())["msg"] == "hello"


def test_signaling_server_logs_json(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    env.update(SIGNALING_ADMIN_SECRET="json-test-secret", RTC_ANNOTATOR_CONFIG=os.devnull,
               PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "signaling", "--port", "0", "--state",
                             str(tmp_path / "s.sqlite3"), "--log-format", "json"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        records = []
        for line in proc.stderr:
            if line.startswith("{"):
                records.append(json.loads(line))
                if records[-1]["msg"] == "signaling server listening":
                    break
        assert records[-1]["level"] == "INFO" and records[-1]["url"].startswith("ws://")
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stderr is not None:
            proc.stderr.close()
