"""`rtc-annotator demo`: the whole system on 127.0.0.1 (what `make demo` runs)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from rtc_annotator.commands.common import fail_with
from rtc_annotator.errors import RtcAnnotatorError


def demo_cmd(
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Keep the demo's files here (default: a new temporary directory)."
    ),
) -> None:
    """Start a signaling server and two workers, submit a sample video twice (shared storage,
    then data-channel transfer), then jump and find in the store. Offline, about a minute."""
    from rtc_annotator.demo import run_demo

    where = workdir or Path(tempfile.mkdtemp(prefix="rtc-annotator-demo-"))
    typer.echo(f"demo directory: {where}")
    try:
        code = run_demo(where, lambda line: typer.echo(f"* {line}"))
    except RtcAnnotatorError as exc:
        fail_with(exc, code=1)
    raise typer.Exit(code)


def register(root: typer.Typer) -> None:
    root.command("demo")(demo_cmd)
