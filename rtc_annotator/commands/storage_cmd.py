"""`rtc-annotator storage list|resolve|to-relative`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from rtc_annotator.commands.common import (
    ConfigOption,
    fail_with,
    print_json,
    settings_from,
)
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.storage import StorageResolver

app = typer.Typer(help="Inspect storage backends and resolve shared paths.", no_args_is_help=True)


@app.command("list")
def list_backends(
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the storage backends this machine mounts."""
    storage = settings_from(config).storage_config()
    rows: list[dict[str, str]] = []
    for name in storage.list_backends():
        b = storage.backends[name]
        rows.append(
            {
                "name": b.name,
                "type": b.type,
                "base_path": str(b.base_path),
                "exists": "yes" if b.base_path.is_dir() else "NO",
                "user_subdir": b.user_subdir,
                "description": b.description,
            }
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no storage backends configured (add [storage.<name>] sections)")
        return
    table = Table("name", "type", "base_path", "mounted", "user_subdir", "description")
    for r in rows:
        table.add_row(
            r["name"],
            r["type"],
            r["base_path"],
            r["exists"],
            r["user_subdir"],
            r["description"],
        )
    Console().print(table)


@app.command("resolve")
def resolve(
    relpath: str = typer.Argument(..., metavar="RELPATH", help="Path relative to the user_subdir."),
    backend: str = typer.Option(..., "--backend", "-b", help="Storage backend name."),
    user_subdir: str = typer.Option("", "--user-subdir", "-u", help="User subdirectory."),
    config: ConfigOption = None,
) -> None:
    """Print the absolute local path of a shared file (exit 2 when the path is rejected)."""
    resolver = StorageResolver(settings_from(config).storage_config())
    try:
        path = resolver.resolve(backend, user_subdir, relpath)
    except RtcAnnotatorError as exc:
        fail_with(exc)
    typer.echo(str(path))


@app.command("to-relative")
def to_relative(
    abs_path: Path = typer.Argument(..., metavar="ABS_PATH", help="Local absolute path."),
    backend: str | None = typer.Option(None, "--backend", "-b", help="Force this backend."),
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print backend, user_subdir and relative path of a local file on a shared backend."""
    resolver = StorageResolver(settings_from(config).storage_config())
    try:
        name, sub, rel = resolver.to_relative(abs_path, backend)
    except RtcAnnotatorError as exc:
        fail_with(exc)
    if as_json:
        print_json({"storage_backend": name, "user_subdir": sub, "relative_path": rel})
    else:
        typer.echo(f"storage_backend={name}\nuser_subdir={sub}\nrelative_path={rel}")
