"""`python -m signaling` in a subprocess and the `rtc-annotator room` commands against it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtc_annotator.cli import app

SECRET = "cli-secret"


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "signaling", "--host", "127.0.0.1", "--port", "0",
         "--state", str(tmp_path / "state.sqlite3"), "--log-level", "WARNING"],
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "SIGNALING_ADMIN_SECRET": SECRET},
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"(ws://\S+)", line)
    assert match, line
    try:
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()


def run(*args: str, secret: str | None = None) -> str:
    """The CLI in-process; ``secret``: the admin secret, through $SIGNALING_ADMIN_SECRET."""
    result = CliRunner().invoke(app, list(args), env={"RTC_ANNOTATOR_CONFIG": os.devnull,
                                                      "SIGNALING_ADMIN_SECRET": secret})
    assert result.exit_code == 0, result.output
    return result.output


def test_room_commands(server_url: str) -> None:
    created = json.loads(run("room", "create", "lab", "--server", server_url, "--json",
                             secret=SECRET))
    admin = created["token"]
    common = ["--server", server_url, "--token", admin]
    worker = json.loads(run("room", "token", "--role", "worker", "--ttl", "60", "--json",
                            *common))
    assert worker["role"] == "worker" and worker["room"] == "lab"
    assert run("room", "workers", *common).strip() == "no matching worker online"
    assert json.loads(run("room", "workers", "--json", "--backend", "vast", *common)) == []
    out = run("room", "policy", "--storage", "strict", "--strict-backend", "vast", *common)
    assert "storage = strict" in out and "vast" in out
    assert json.loads(run("room", "policy", "--json", *common))["storage"] == "strict"
    assert "draining" in run("room", "drain", "gpu-1", *common)
    assert "accepting jobs" in run("room", "undrain", "gpu-1", *common)
    assert "no routing decisions" in run("room", "decisions", *common)
    assert "revoked" in run("room", "revoke", worker["token_id"], *common)


def test_room_create_secret_from_file(server_url: str, tmp_path: Path) -> None:
    (tmp_path / "admin").write_text(f"{SECRET}\n")
    created = json.loads(run("room", "create", "lab2", "--server", server_url, "--json",
                             "--admin-secret-file", str(tmp_path / "admin")))
    assert created["room"] == "lab2" and created["token"]


def test_room_create_secret_never_on_the_command_line(server_url: str, tmp_path: Path) -> None:
    env = {"RTC_ANNOTATOR_CONFIG": os.devnull, "SIGNALING_ADMIN_SECRET": None}
    result = CliRunner().invoke(app, ["room", "create", "lab", "--server", server_url,
                                      "--admin-secret", SECRET], env=env)
    assert result.exit_code == 2 and "No such option" in result.output
    result = CliRunner().invoke(app, ["room", "create", "lab", "--server", server_url], env=env)
    assert result.exit_code == 2
    assert "SIGNALING_ADMIN_SECRET" in result.output and "--admin-secret-file" in result.output
    (tmp_path / "empty").write_text("\n")
    result = CliRunner().invoke(app, ["room", "create", "lab", "--server", server_url,
                                      "--admin-secret-file", str(tmp_path / "empty")], env=env)
    assert result.exit_code == 2 and "is empty" in result.output


def test_room_errors_are_one_line(server_url: str) -> None:
    result = CliRunner().invoke(app, ["room", "create", "lab", "--server", server_url],
                                env={"RTC_ANNOTATOR_CONFIG": os.devnull,
                                     "SIGNALING_ADMIN_SECRET": "wrong-secret"})
    assert result.exit_code == 1
    assert "BAD_ADMIN_SECRET" in result.output and "Traceback" not in result.output
    assert "wrong-secret" not in result.output
    result = CliRunner().invoke(app, ["room", "workers", "--server", server_url,
                                      "--token", "rtca1.x.y"],
                                env={"RTC_ANNOTATOR_CONFIG": os.devnull})
    assert result.exit_code == 1 and "TOKEN_INVALID" in result.output


def test_room_workers_table(server_url: str) -> None:
    import asyncio

    from rtc_annotator.signaling_client import SignalingClient
    from tests.signaling.conftest import caps

    admin = json.loads(run("room", "create", "lab", "--server", server_url, "--json",
                           secret=SECRET))["token"]
    common = ["--server", server_url, "--token", admin]
    worker_token = json.loads(run("room", "token", "--role", "worker", "--json", *common))

    async def scenario() -> tuple[str, str]:
        worker = SignalingClient(server_url, token=worker_token["token"])
        await worker.connect()
        await worker.register_worker(caps("gpu-a", backends=("vast",), gpu_mb=80000, slots=2))
        try:
            table = await asyncio.to_thread(run, "room", "workers", *common)
            as_json = await asyncio.to_thread(run, "room", "workers", "--json",
                                              "--backend", "nfs", *common)
        finally:
            await worker.close()
        return table, as_json

    table, as_json = asyncio.run(scenario())
    assert "gpu-a" in table and "vast (nfs)" in table and "80000 MiB" in table
    assert "2/2" in table
    assert json.loads(as_json) == []
