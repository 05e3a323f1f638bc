"""`rtc-annotator submit VIDEO...`: run videos through workers of the room, with progress.

Exit codes: 0 every job ok (or detached), 1 a job failed, 2 usage or configuration error,
130 interrupted (Ctrl-C: asks, on a terminal, whether to cancel the remote jobs; otherwise they
keep running and `rtc-annotator jobs attach JOB` collects their results).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any, Literal, cast

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from rtc_annotator.commands.common import (
    EXIT_FAILURE,
    ConfigOption,
    fail,
    fail_with,
    print_json,
    settings_from,
)
from rtc_annotator.config import MODEL_PROFILES, Settings
from rtc_annotator.errors import RtcAnnotatorError


async def _submit_all(
    settings: Settings,
    videos: list[Path],
    *,
    pipelines: list[str],
    profile: str,
    transfer: Literal["auto", "shared", "rtc"],
    storage_backend: str | None,
    options: dict[str, dict[str, Any]],
    quiet: bool,
    job_ids: list[str],
    detach: bool = False,
    worker: str | None = None,
    min_gpu_memory_mb: int = 0,
) -> list[dict[str, Any]]:
    from rtc_annotator.client.spool import Spool
    from rtc_annotator.client.submit import submit_video
    from rtc_annotator.signaling_client import SignalingClient
    from rtc_annotator.store import Store

    console = Console(stderr=True, quiet=quiet)
    store = await Store.open(settings.database.url)
    spool = Spool(store, settings.client.spool_dir)
    sig = SignalingClient.from_settings(settings.signaling)
    await sig.connect()
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=quiet,
        ) as bars:

            def handler(video: Path) -> Any:
                task: TaskID = bars.add_task(f"{video.name}: starting", total=None)

                def on_event(kind: str, data: dict[str, Any]) -> None:
                    if kind == "queued":
                        bars.update(task, description=f"{video.name}: queued #{data['position']}")
                    elif kind == "routed":
                        console.log(
                            f"{video.name}: routed to {data['worker']} ({data['decision']})"
                        )
                        bars.update(task, description=f"{video.name}: connecting")
                    elif kind == "upload":
                        bars.update(
                            task,
                            description=f"{video.name}: upload",
                            completed=data["done"],
                            total=data["total"],
                        )
                    elif kind == "progress" and data["stage"] != "transfer":
                        bars.update(
                            task,
                            description=f"{video.name}: {data['stage']}",
                            completed=int(data["fraction"] * 100),
                            total=100,
                        )
                    elif kind == "rerouted":
                        console.log(
                            f"{video.name}: worker {data['worker']} lost ({data['reason']}), "
                            "routing again"
                        )
                    elif kind == "spooled":
                        console.log(f"{video.name}: database unreachable, batch spooled")
                    elif kind == "detached":
                        console.log(f"{video.name}: accepted by {data['worker']}, detached")

                return on_event

            results = await asyncio.gather(
                *(
                    submit_video(
                        settings,
                        v,
                        store=store,
                        pipelines=pipelines,
                        profile=profile,
                        options=options,
                        transfer=transfer,
                        storage_backend=storage_backend,
                        signaling=sig,
                        on_event=handler(v),
                        spool=spool,
                        job_id=job_id,
                        detach=detach,
                        worker=worker,
                        min_gpu_memory_mb=min_gpu_memory_mb,
                    )
                    for v, job_id in zip(videos, job_ids, strict=True)
                )
            )
    finally:
        await sig.close()
        await spool.close()
        await store.close()
    return [r.to_dict() for r in results]


def submit_cmd(
    videos: list[Path] = typer.Argument(..., help="Video files."),
    pipelines: str | None = typer.Option(
        None, "--pipelines", "-p", help="Comma-separated (default: [client] pipelines)."
    ),
    profile: str | None = typer.Option(None, "--profile", help="fast, balanced or high_quality."),
    transfer: str | None = typer.Option(
        None, "--transfer", help="auto (default), shared (never send the file) or rtc (always)."
    ),
    storage_backend: str | None = typer.Option(
        None, "--storage-backend", help="Use this backend for the shared path."
    ),
    options: str = typer.Option("{}", "--options", help="Per-pipeline JSON options."),
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON (no progress)."),
    detach: bool = typer.Option(
        False, "--detach", help="Exit once each job is accepted and its input sent; print the "
        "job ids (collect results later with `jobs attach JOB`)."
    ),
    worker: str | None = typer.Option(
        None, "--worker", help="Send the jobs to this worker only (by name, as in `room "
        "workers`); it queues them when its slots are full. An error when it is not online.",
        show_default=False,
    ),
    min_gpu_mem: int = typer.Option(
        0, "--min-gpu-mem", min=0, metavar="MB",
        help="Only workers whose largest GPU has at least this many MiB (0: any, CPU included).",
    ),
) -> None:
    """Annotate videos on workers of the room; results go into the store.

    Exit codes: 0 ok, 1 a job failed, 2 usage/config error, 130 interrupted."""
    settings = settings_from(config)
    names = [
        p.strip()
        for p in (pipelines or ",".join(settings.client.pipelines)).split(",")
        if p.strip()
    ]
    prof = profile or settings.client.profile
    if prof not in MODEL_PROFILES:
        fail(f"OPTIONS_ERROR: unknown profile {prof!r} (use {', '.join(MODEL_PROFILES)})")
    mode = transfer or settings.client.transfer
    if mode not in ("auto", "shared", "rtc"):
        fail(f"OPTIONS_ERROR: unknown transfer mode {mode!r} (use auto, shared or rtc)")
    try:
        opts = json.loads(options)
    except json.JSONDecodeError as exc:
        fail(f"OPTIONS_ERROR: --options is not JSON ({exc.msg})")
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        fail(f"VIDEO_ERROR: not a file: {', '.join(missing)}")
    if not settings.signaling.token:
        fail("CONFIG_ERROR: [signaling] token is not set -- ask the room admin for a client token")
    job_ids = [uuid.uuid4().hex[:16] for _ in videos]
    try:
        results = asyncio.run(
            _submit_all(
                settings,
                [v.resolve() for v in videos],
                pipelines=names,
                profile=prof,
                transfer=cast(Literal["auto", "shared", "rtc"], mode),
                storage_backend=storage_backend,
                options=opts,
                quiet=as_json,
                job_ids=job_ids,
                detach=detach,
                worker=worker,
                min_gpu_memory_mb=min_gpu_mem,
            )
        )
    except RtcAnnotatorError as exc:
        fail_with(exc, code=EXIT_FAILURE)
    except KeyboardInterrupt:
        _interrupted(settings, job_ids)
    if detach and not as_json:
        for r in results:
            if r["detached"]:
                typer.echo(r["job_id"])
    if as_json:
        print_json(results)
    else:
        table = Table("video", "worker", "transfer", "sent MB", "artifacts", "seconds", "result")
        for r in results:
            err = r["error"]
            table.add_row(
                Path(r["video"]).name,
                r["worker"] or "-",
                r["transfer"] or "-",
                f"{r['sent_bytes'] / 1e6:.1f}",
                str(r["artifacts"]),
                str(r["seconds"]),
                "ok" if r["ok"] else f"{err['code']}: {err['message']}",
            )
        Console(stderr=detach).print(table)
        pending = sum(r["spool_pending"] for r in results)
        if pending:
            sys.stderr.write(
                f"warning: {pending} spooled batch file(s) wait in {settings.client.spool_dir}: "
                "the database was unreachable; run `rtc-annotator spool flush`\n"
            )
    if not all(r["ok"] or r["detached"] for r in results):
        raise typer.Exit(EXIT_FAILURE)


def _interrupted(settings: Settings, job_ids: list[str]) -> None:
    """Ctrl-C: on a terminal ask whether to cancel the remote jobs; else leave them running."""
    from rtc_annotator.client.jobs import JobRegistry, UnknownJob

    registry = JobRegistry(settings.client.jobs_path())

    async def running() -> list[str]:
        out = []
        for job_id in job_ids:
            try:
                record = await registry.get(job_id)
            except UnknownJob:
                continue
            if record.worker is not None and not record.status.terminal:
                out.append(job_id)
        return out

    live = asyncio.run(running())
    if live and sys.stdin.isatty():
        cancel = typer.confirm(
            f"\ninterrupted: cancel the remote job(s) {', '.join(live)}? "
            "(no: they keep running for `rtc-annotator jobs attach`)",
            default=False,
        )
        if cancel:
            asyncio.run(_cancel_all(settings, live))
            raise typer.Exit(130)
    sys.stderr.write("\ninterrupted\n")
    for job_id in live:
        sys.stderr.write(
            f"job {job_id} keeps running on its worker; collect it with "
            f"`rtc-annotator jobs attach {job_id}` (or `jobs cancel {job_id}`)\n"
        )
    raise typer.Exit(130)


async def _cancel_all(settings: Settings, job_ids: list[str]) -> None:
    from rtc_annotator.client.submit import cancel_job
    from rtc_annotator.store import Store

    store = await Store.open(settings.database.url)
    try:
        for job_id in job_ids:
            r = await cancel_job(settings, job_id, store=store)
            state = "cancelled" if r.error and r.error.code == "CANCELLED" else (
                "had already finished" if r.ok else f"{r.error.code if r.error else 'failed'}")
            sys.stderr.write(f"job {job_id}: {state}\n")
    finally:
        await store.close()


def register(root: typer.Typer) -> None:
    root.command("submit")(submit_cmd)
