"""Every command's help keeps its brackets ([worker] models_dir, [default: ...]); shell completion
is on; `serve` and the signaling server do not share a default port; one version source."""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

import rtc_annotator
from rtc_annotator.cli import app
from rtc_annotator.commands.store_cmd import DEFAULT_API_PORT
from signaling.config import ServerConfig

ENV = {"RTC_ANNOTATOR_CONFIG": os.devnull, "COLUMNS": "200"}


def _walk(cmd: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, cmd
    if isinstance(getattr(cmd, "commands", None), dict):  # a group (typer's own click)
        for name, sub in cmd.commands.items():
            yield from _walk(sub, [*path, name])


def _help(path: list[str]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env=ENV)
    assert result.exit_code == 0, (path, result.output)
    return result.output


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_every_help_text_keeps_its_brackets() -> None:
    root = typer.main.get_command(app)
    seen = 0
    for path, cmd in _walk(root, []):
        shown = _squash(_help(path))
        assert "\x1b[" not in shown, path
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        for text in texts:
            for bracket in re.findall(r"\[[^\]\s]+\]", text):
                assert bracket in shown, (path, bracket, shown)
        seen += 1
    assert seen > 30   # every group and command was visited


def test_known_bracket_texts_survive() -> None:
    assert "Manage model weights in [worker] models_dir." in _squash(_help(["models"]))
    assert "(default: [client] pipelines)" in _squash(_help(["submit"]))
    assert "(default: [signaling] url)" in _squash(_help(["room", "workers"]))
    assert "[default: " in _squash(_help(["serve"]))


def test_shell_completion_is_offered() -> None:
    shown = _help([])
    assert "--install-completion" in shown and "--show-completion" in shown
    result = CliRunner().invoke(app, ["--show-completion", "bash"], env=ENV)
    assert result.exit_code == 0 and "_RTC_ANNOTATOR_COMPLETE" in result.output


def test_serve_port_differs_from_the_signaling_server() -> None:
    signaling_port = ServerConfig(state_path=__import__("pathlib").Path("x"),
                                  admin_secret="x").port
    assert DEFAULT_API_PORT != signaling_port
    assert f"[default: {DEFAULT_API_PORT}]" in _squash(_help(["serve"]))


def test_one_version_source() -> None:
    assert rtc_annotator.__version__ == importlib.metadata.version("rtc-annotator")
    result = CliRunner().invoke(app, ["--version"], env=ENV)
    assert result.output.strip() == f"rtc-annotator {rtc_annotator.__version__}"
