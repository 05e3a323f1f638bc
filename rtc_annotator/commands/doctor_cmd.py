"""`rtc-annotator doctor [--config F] [--json]`: check this machine; exit 0 ok (warnings
allowed), 1 a check failed, 2 the configuration cannot be read."""

from __future__ import annotations

import asyncio

import typer

from rtc_annotator.commands.common import EXIT_USAGE, ConfigOption, print_json
from rtc_annotator.config import load_settings
from rtc_annotator.doctor import Check, Status, exit_code, run_checks
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.redact import mask

_MARK = {Status.OK: "ok  ", Status.WARN: "WARN", Status.FAIL: "FAIL"}


def _print(checks: list[Check]) -> None:
    width = max(len(c.name) for c in checks)
    for c in checks:
        typer.echo(f"[{_MARK[c.status]}] {c.name.ljust(width)}  {c.detail}")
        if c.fix and c.status is not Status.OK:
            typer.echo(f"       {''.ljust(width)}  fix: {c.fix}")
    counts = {s: sum(1 for c in checks if c.status is s) for s in Status}
    typer.echo(f"{counts[Status.OK]} ok, {counts[Status.WARN]} warning(s), "
               f"{counts[Status.FAIL]} failure(s)")


def doctor_cmd(
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1,
                                  help="Seconds each network check may take."),
) -> None:
    """Check Python and packages, GPUs, storage backends, the database, the signaling server
    (with the token), ICE servers and pipeline weights; print a fix for each problem.

    Exit 0 when no check failed (warnings allowed), 1 when one did, 2 when the configuration
    cannot be read (the report still says why). Nothing that is not configured is contacted.
    """
    try:
        settings = load_settings(config)
    except RtcAnnotatorError as exc:
        checks = [Check("config", Status.FAIL, exc.message,
                        exc.hint or "fix the file: rtc-annotator config check")]
        code = EXIT_USAGE
    else:
        checks = asyncio.run(run_checks(settings, timeout_s=timeout))
        code = exit_code(checks)
    checks = [Check(c.name, c.status, mask(c.detail), mask(c.fix)) for c in checks]
    if as_json:
        print_json({"checks": [c.to_dict() for c in checks], "exit_code": code})
    else:
        _print(checks)
    raise typer.Exit(code)


def register(root: typer.Typer) -> None:
    root.command("doctor")(doctor_cmd)
