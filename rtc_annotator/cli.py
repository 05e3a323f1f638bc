"""The ``rtc-annotator`` command line: a thin layer over the library.

Each command group lives in :mod:`rtc_annotator.commands`; this module mounts them, sets up
logging and turns any project error that escapes into one line on stderr (exit 2).
"""

from __future__ import annotations

import os
import sys

import typer

from rtc_annotator import __version__, logs
from rtc_annotator.commands import (
    config_cmd,
    demo_cmd,
    doctor_cmd,
    jobs_cmd,
    pipelines_cmd,
    pool_cmd,
    room_cmd,
    spool_cmd,
    storage_cmd,
    store_cmd,
    submit_cmd,
    trust_cmd,
    worker_cmd,
)
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.redact import mask

app = typer.Typer(
    name="rtc-annotator",
    help="Run video annotation pipelines on remote GPU workers over WebRTC.",
    epilog="Exit codes: 0 ok; 1 a job or check failed; 2 usage or configuration error; "
    "130 interrupted (Ctrl-C).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # plain help: rich markup would eat "[worker]" and "[default: ...]" (propagates to subgroups)
    rich_markup_mode=None,
    add_completion=True,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(storage_cmd.app, name="storage")
app.add_typer(room_cmd.app, name="room")
app.add_typer(jobs_cmd.app, name="jobs")
app.add_typer(spool_cmd.app, name="spool")
app.add_typer(trust_cmd.app, name="trust")
pipelines_cmd.register(app)  # pipelines, models, annotate
store_cmd.register(app)  # results, jump, find, export, serve, db, select
worker_cmd.register(app)  # worker
submit_cmd.register(app)  # submit
demo_cmd.register(app)  # demo
doctor_cmd.register(app)  # doctor
pool_cmd.register(app)  # pool run, pool status


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rtc-annotator {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    log_level: str = typer.Option("WARNING", "--log-level", envvar=logs.LEVEL_ENV,
                                  help="DEBUG, INFO, WARNING or ERROR."),
    log_format: str = typer.Option("text", "--log-format", envvar=logs.FORMAT_ENV,
                                   help="text (one plain line per record) or json (one JSON "
                                   "object per line, for cluster log collectors)."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter("use DEBUG, INFO, WARNING or ERROR", param_hint="--log-level")
    if log_format not in logs.FORMATS:
        raise typer.BadParameter("use text or json", param_hint="--log-format")
    os.environ[logs.FORMAT_ENV] = log_format  # the worker's job processes log the same way
    logs.configure(log_level, fmt=log_format)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="rtc-annotator")
    except RtcAnnotatorError as exc:
        sys.stderr.write(f"error: {exc.code}: {mask(exc.one_line())}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
