"""`rtc-annotator pool run|status`: SLURM workers between min_workers and max_workers that
follow the room's queue (see docs/slurm.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import time
from typing import Annotated, Any

import typer

from rtc_annotator.commands.common import ConfigOption, fail_with, print_json, settings_from
from rtc_annotator.errors import ConfigError, RtcAnnotatorError

app = typer.Typer(help="Keep SLURM workers for a room, following its queue.",
                  no_args_is_help=True)


@app.command("run")
def run_cmd(
    config: ConfigOption = None,
    once: Annotated[bool, typer.Option(
        "--once", help="Do one round (look, decide, act) and exit.")] = False,
) -> None:
    """Run the pool until SIGTERM/Ctrl-C: every [pool] poll_s, submit workers when route
    requests queue up (never more than max_workers), keep min_workers. Its workers keep
    running when it stops; a restarted pool finds them with squeue."""
    from rtc_annotator.pool.service import PoolService

    settings = settings_from(config)

    async def main() -> None:
        service = PoolService(settings)
        stop = asyncio.Event()
        if once:
            await service.start()
            try:
                await service.step()
            finally:
                await service.close()
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await service.run(stop)

    try:
        asyncio.run(main())
    except ConfigError as exc:
        fail_with(exc)
    except RtcAnnotatorError as exc:
        fail_with(exc, code=1)


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command("status")
def status_cmd(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole status as JSON.")]
    = False,
    events: Annotated[int, typer.Option("--events", help="How many recent actions to show.")]
    = 10,
) -> None:
    """What the pool sees and what it did, and why (from [pool] state_dir/status.json)."""
    from rtc_annotator.pool.service import read_status

    settings = settings_from(config)
    try:
        status = read_status(settings.pool.state_dir)
    except RtcAnnotatorError as exc:
        fail_with(exc, code=1)
    if as_json:
        print_json(status)
        return
    age = time.time() - float(status.get("updated_at") or 0)
    poll = float(status.get("poll_s") or 10)
    alive = "running" if age < 3 * poll + 5 else f"NOT RUNNING (no update for {age:.0f} s)"
    typer.echo(f"pool for room {status.get('room')}: {alive}, updated "
               f"{_when(status.get('updated_at'))}")
    typer.echo(f"workers: min {status.get('min_workers')}, max {status.get('max_workers')}, "
               f"idle exit {status.get('idle_exit_s')} s; queued requests: "
               f"{status.get('queue', '-')}; online: {status.get('online', '-')}")
    if status.get("error"):
        typer.echo(f"last round failed: {status['error']}")
    for job in status.get("jobs", []):
        where = job.get("worker") or (f"pending: {job['reason']}" if job.get("reason")
                                      else "starting")
        typer.echo(f"  job {job['job_id']:>8}  {job['template']:<20} {job['kind']:<5} "
                   f"{job['state']:<10} {where}")
    for note in status.get("notes", []):
        typer.echo(f"note: {note}")
    shown = status.get("events", [])[-events:] if events > 0 else []
    if shown:
        typer.echo("recent actions:")
    for ev in shown:
        what = " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("at", "action", "reason"))
        typer.echo(f"  {_when(ev.get('at'))} {ev.get('action')} {what} -- {ev.get('reason', '')}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="pool")
