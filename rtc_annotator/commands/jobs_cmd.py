"""`rtc-annotator jobs list|status|attach|cancel`: jobs survive the client that submitted them."""

from __future__ import annotations

import asyncio
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from rtc_annotator.commands.common import (
    EXIT_FAILURE,
    ConfigOption,
    fail,
    fail_with,
    print_json,
    settings_from,
)
from rtc_annotator.config import Settings
from rtc_annotator.errors import RtcAnnotatorError

app = typer.Typer(help="Jobs recorded on this machine: list, status, attach, cancel.",
                  no_args_is_help=True)


def _registry(settings: Settings) -> Any:
    from rtc_annotator.client.jobs import JobRegistry

    return JobRegistry(settings.client.jobs_path())


@app.command("list")
def list_cmd(
    config: ConfigOption = None,
    all_: bool = typer.Option(False, "--all", help="Also jobs that ended."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Jobs this machine submitted (by default those not ended)."""
    settings = settings_from(config)
    records = asyncio.run(_registry(settings).list())
    if not all_:
        records = [r for r in records if not r.status.terminal]
    if as_json:
        print_json([r.model_dump(mode="json") for r in records])
        return
    table = Table("job", "status", "worker", "video", "batches", "artifacts", "updated")
    for r in records:
        table.add_row(r.job_id, r.status.value, r.worker or "-", r.video.rsplit("/", 1)[-1],
                      str(r.last_acked_seq), str(r.artifacts),
                      r.updated_at.strftime("%Y-%m-%d %H:%M:%S"))
    Console().print(table)


@app.command("status")
def status_cmd(
    job_id: str = typer.Argument(..., help="Job id."),
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What this machine knows about one job."""
    settings = settings_from(config)
    try:
        record = asyncio.run(_registry(settings).get(job_id))
    except RtcAnnotatorError as exc:
        fail_with(exc, code=EXIT_FAILURE)
    if as_json:
        print_json(record.model_dump(mode="json"))
        return
    for key, value in record.model_dump(mode="json").items():
        typer.echo(f"{key}: {value}")


async def _follow(settings: Settings, job_id: str, cancel: bool, quiet: bool) -> dict[str, Any]:
    from rtc_annotator.client.submit import attach_job
    from rtc_annotator.store import Store

    console = Console(stderr=True, quiet=quiet)

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "connected":
            console.log(f"{job_id}: connected to {data['worker']}")
        elif kind == "rerouted":
            console.log(f"{job_id}: worker {data['worker']} lost ({data['reason']}), "
                        "submitting again")
        elif kind == "spooled":
            console.log(f"{job_id}: database unreachable, batch spooled")

    store = await Store.open(settings.database.url)
    try:
        result = await attach_job(settings, job_id, store=store, cancel=cancel,
                                  on_event=on_event)
    finally:
        await store.close()
    return result.to_dict()


def _attach_or_cancel(job_id: str, config: Any, as_json: bool, cancel: bool) -> None:
    settings = settings_from(config)
    if not settings.signaling.token:
        fail("CONFIG_ERROR: [signaling] token is not set -- ask the room admin for a client token")
    try:
        result = asyncio.run(_follow(settings, job_id, cancel, as_json))
    except RtcAnnotatorError as exc:
        fail_with(exc, code=EXIT_FAILURE)
    if as_json:
        print_json(result)
    else:
        err = result["error"]
        state = "ok" if result["ok"] else f"{err['code']}: {err['message']}" if err else "failed"
        typer.echo(f"{job_id}: {state}; {result['artifacts']} artifact(s) stored"
                   + (f"; {result['spool_pending']} spooled file(s) wait for `spool flush`"
                      if result["spool_pending"] else ""))
    ok = result["ok"] or (cancel and (result["error"] or {}).get("code") == "CANCELLED")
    if not ok:
        raise typer.Exit(EXIT_FAILURE)


@app.command("attach")
def attach_cmd(
    job_id: str = typer.Argument(..., help="Job id (see `jobs list`)."),
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Reconnect to the job's worker and store everything not stored yet."""
    _attach_or_cancel(job_id, config, as_json, cancel=False)


@app.command("cancel")
def cancel_cmd(
    job_id: str = typer.Argument(..., help="Job id (see `jobs list`)."),
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Cancel the job on its worker (what it produced so far is stored)."""
    _attach_or_cancel(job_id, config, as_json, cancel=True)
