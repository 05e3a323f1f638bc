"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from rtc_annotator.config import Settings, load_settings
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.redact import mask

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $RTC_ANNOTATOR_CONFIG, then the user config file).",
        show_default=False,
    ),
]


def fail(message: str, *, code: int = EXIT_USAGE) -> NoReturn:
    """Print a one-line error on stderr (credentials masked) and exit."""
    sys.stderr.write(f"error: {mask(message)}\n")
    raise typer.Exit(code)


def fail_with(exc: RtcAnnotatorError, *, code: int = EXIT_USAGE) -> NoReturn:
    fail(f"{exc.code}: {exc.one_line()}", code=code)


def settings_from(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except RtcAnnotatorError as exc:
        fail_with(exc)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str, sort_keys=True) + "\n")
