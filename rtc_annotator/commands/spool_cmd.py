"""`rtc-annotator spool status|flush`: batches waiting for an unreachable database."""

from __future__ import annotations

import asyncio

import typer

from rtc_annotator.commands.common import (
    EXIT_FAILURE,
    ConfigOption,
    fail_with,
    print_json,
    settings_from,
)
from rtc_annotator.errors import RtcAnnotatorError

app = typer.Typer(help="Artifact batches spooled while the database was unreachable.",
                  no_args_is_help=True)


@app.command("status")
def status_cmd(
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """How many writes wait in [client] spool_dir."""
    from rtc_annotator.client.spool import spool_status

    settings = settings_from(config)
    status = spool_status(settings.client.spool_dir)
    if as_json:
        print_json(status.to_dict())
    else:
        typer.echo(f"{status.directory}: {status.files} file(s), {status.envelopes} "
                   f"artifact(s) waiting; {status.rejected} rejected")


@app.command("flush")
def flush_cmd(
    config: ConfigOption = None,
    wait: float = typer.Option(0.0, "--wait", help="Keep retrying this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write the spooled batches into the store; exit 1 when some are still waiting."""
    from rtc_annotator.client.spool import Spool
    from rtc_annotator.store import Store

    settings = settings_from(config)

    async def run() -> dict[str, object]:
        store = await Store.open(settings.database.url)
        spool = Spool(store, settings.client.spool_dir)
        try:
            return (await spool.flush(wait_s=wait)).to_dict()
        finally:
            await spool.close()
            await store.close()

    try:
        status = asyncio.run(run())
    except RtcAnnotatorError as exc:
        fail_with(exc, code=EXIT_FAILURE)
    if as_json:
        print_json(status)
    else:
        typer.echo(f"flushed {status['flushed_files']} file(s); {status['files']} still "
                   f"waiting; {status['rejected']} rejected (see {status['directory']}/rejected)")
    if status["files"]:
        raise typer.Exit(EXIT_FAILURE)
