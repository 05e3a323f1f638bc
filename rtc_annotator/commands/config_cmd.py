"""`rtc-annotator config check|show`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w
import typer

from rtc_annotator.commands.common import ConfigOption, print_json, settings_from
from rtc_annotator.redact import mask

app = typer.Typer(help="Check and show the configuration.", no_args_is_help=True)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return mask(value)  # postgresql://u:***@h/db
    return value


@app.command("check")
def check(config: ConfigOption = None) -> None:
    """Validate the configuration: exit 0 when valid, 2 with a one-line reason when not."""
    settings = settings_from(config)
    where = settings.source or "built-in defaults"
    backends = ", ".join(sorted(settings.storage)) or "none"
    typer.echo(f"ok: {where} is valid (storage backends: {backends})")


@app.command("show")
def show(
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of TOML."),
) -> None:
    """Print the effective configuration (file + environment overrides + defaults).

    Credentials are hidden: URL passwords become ***, tokens and ICE credentials <set>."""
    settings = settings_from(config)
    data = _plain(settings.model_dump(mode="python"))
    if settings.signaling.token:
        data["signaling"]["token"] = "<set>"
    for server in data.get("ice", {}).get("servers", []):
        if server.get("credential"):
            server["credential"] = "<set>"
    if as_json:
        print_json(data)
    else:
        typer.echo(f"# source: {settings.source or 'built-in defaults'}")
        typer.echo(tomli_w.dumps(data).rstrip())
