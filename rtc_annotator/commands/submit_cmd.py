"""`rtc-annotator submit VIDEO...`: run videos through workers of the room, with progress."""

from __future__ import annotations

import asyncio
import json
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
) -> list[dict[str, Any]]:
    from rtc_annotator.client.submit import submit_video
    from rtc_annotator.signaling_client import SignalingClient
    from rtc_annotator.store import Store

    console = Console(stderr=True, quiet=quiet)
    store = await Store.open(settings.database.url)
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
                    elif kind == "artifacts":
                        pass

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
                    )
                    for v in videos
                )
            )
    finally:
        await sig.close()
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
) -> None:
    """Annotate videos on workers of the room; results go into the store."""
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
            )
        )
    except RtcAnnotatorError as exc:
        fail_with(exc, code=EXIT_FAILURE)
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
        Console().print(table)
    if not all(r["ok"] for r in results):
        raise typer.Exit(EXIT_FAILURE)


def register(root: typer.Typer) -> None:
    root.command("submit")(submit_cmd)
