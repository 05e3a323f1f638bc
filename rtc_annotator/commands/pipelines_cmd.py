"""`rtc-annotator pipelines list`, `models fetch` and `annotate`.

``pipelines list`` shows what this machine can run and why not; ``models fetch`` is the ONLY
code that downloads weights (on a login node with internet); ``annotate`` runs the pipelines
locally through the same :class:`~rtc_annotator.worker.runner.JobRunner` a worker uses and
stores the results in the configured store.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from pathlib import Path
from typing import Any

import typer

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
from rtc_annotator.logs import get_logger
from rtc_annotator.pipelines.profiles import PROFILES
from rtc_annotator.pipelines.registry import DEFAULT_REGISTRY

log = get_logger(__name__)
app = typer.Typer(help="List the annotation pipelines this machine can run.",
                  no_args_is_help=True)
models_app = typer.Typer(help="Manage model weights in [worker] models_dir.", no_args_is_help=True)

YOLO_RELEASE = "https://github.com/ultralytics/assets/releases/download/v8.3.0/"


class OfflineError(RtcAnnotatorError):
    """`models fetch` needs the internet and this machine has none."""

    code = "NO_INTERNET"
    default_hint = ("run `rtc-annotator models fetch` on a login node with internet, on a "
                    "directory the compute nodes mount, and set [worker] models_dir to it")


@app.command("list")
def list_cmd(
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Pipelines this machine can run, and for the others the reason."""
    settings = settings_from(config)
    rows: list[dict[str, Any]] = [
        {"name": s.name, "version": s.version, "artifact_types": list(s.artifact_types),
         "available": s.ok, "reason": s.reason, "profiles": list(s.profiles),
         "models": [dict(m) for m in s.models]}
        for s in DEFAULT_REGISTRY.statuses(settings)
    ]
    if as_json:
        print_json(rows)
        return
    for r in rows:
        state = "available  " if r["available"] else "UNAVAILABLE"
        models = ", ".join(m["name"] for m in r["models"])
        profiles = f" [{', '.join(r['profiles'])}]" if r["available"] else ""
        reason = f" -- {r['reason']}" if r["reason"] else ""
        held = f" models: {models};" if models else ""
        typer.echo(f"{r['name']:<11} {state}{profiles}{held}{reason}")


# ---------------------------------------------------------------------------- models fetch


def check_internet(hosts: tuple[str, ...] = ("huggingface.co", "github.com"),
                   timeout_s: float = 5.0) -> None:
    """Raise :class:`OfflineError` unless every host answers on port 443."""
    for host in hosts:
        try:
            socket.create_connection((host, 443), timeout=timeout_s).close()
        except OSError as exc:
            raise OfflineError(f"cannot reach {host}:443 ({exc.__class__.__name__}): "
                               "this machine looks offline") from None


def _download(url: str, dest: Path) -> None:
    import urllib.request

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=60) as resp, part.open("wb") as out:  # noqa: S310
        while chunk := resp.read(1 << 20):
            out.write(chunk)
    part.replace(dest)


def fetch_models(to: Path, profile: str, pipelines: list[str]) -> list[str]:
    """Download what ``profile`` needs for ``pipelines`` into ``to``; return what was written."""
    check_internet()
    written: list[str] = []
    for name in pipelines:
        spec = PROFILES[profile].get(name)
        if spec is None:
            continue
        if name == "transcript":
            from faster_whisper import download_model

            target = to / "faster-whisper" / spec.model
            download_model(spec.model, output_dir=str(target))
            written.append(str(target))
        elif name == "objects":
            dest = to / "ultralytics" / spec.model
            _download(YOLO_RELEASE + spec.model, dest)
            written.append(str(dest))
        elif name == "ocr":
            try:
                import easyocr
            except Exception as exc:
                raise RtcAnnotatorError(
                    f"easyocr cannot import here ({type(exc).__name__}), so its weights "
                    "cannot be fetched", code="PIPELINE_NOT_AVAILABLE",
                    hint="pip install 'rtc-annotator[ocr]' on the login node") from None
            store = to / "easyocr"
            easyocr.Reader(["en"], gpu=False, model_storage_directory=str(store),
                           download_enabled=True, recog_network=spec.model, verbose=False)
            written.append(str(store))
    return written


@models_app.command("fetch")
def fetch_cmd(
    to: Path = typer.Option(..., "--to", help="Directory to fill (becomes [worker] models_dir)."),
    profile: str = typer.Option("balanced", "--profile", help="fast, balanced or high_quality."),
    pipelines: str = typer.Option("transcript,objects,ocr", "--pipelines",
                                  help="Comma-separated model pipelines."),
) -> None:
    """Download the weights a profile needs (run on a machine WITH internet)."""
    if profile not in MODEL_PROFILES:
        fail(f"unknown profile {profile!r}; use one of {', '.join(MODEL_PROFILES)}")
    names = [p.strip() for p in pipelines.split(",") if p.strip()]
    try:
        written = fetch_models(to, profile, names)
    except RtcAnnotatorError as exc:
        fail_with(exc, code=EXIT_FAILURE)
    for path in written:
        typer.echo(f"fetched {path}")


# ---------------------------------------------------------------------------- annotate


async def annotate_video(settings: Settings, video: Path, pipelines: list[str], profile: str,
                         options: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Run ``pipelines`` on ``video`` locally and store every artifact; return a summary."""
    from rtc_annotator.store import Store
    from rtc_annotator.worker.envelopes import EnvelopeBuilder, sha256_file
    from rtc_annotator.worker.runner import JobRunner

    asset_id = await asyncio.to_thread(sha256_file, video)
    size = (await asyncio.to_thread(video.stat)).st_size
    job_id = uuid.uuid4().hex[:12]
    builder = EnvelopeBuilder(asset_id, job_id, pipelines, profile, options)
    run_ids, hashes = builder.run_ids, builder.hashes
    worker = f"local:{settings.worker.name}"
    store = await Store.open(settings.database.url)
    try:
        await store.upsert_asset(asset_id, video.name, size)
        for name in pipelines:
            await store.start_run(run_ids[name], asset_id, name, profile, worker, hashes[name])
        async with JobRunner(settings, slots=1) as runner:
            handle = await runner.submit(job_id, video, pipelines, profile, options)
            async for batch in handle.outputs():
                envelopes = builder.build(batch)
                for out in batch:
                    if out.artifact_type == "video.metadata":
                        await store.upsert_asset(
                            asset_id, video.name, size,
                            duration_ms=out.payload["duration_ms"], fps=out.payload["fps"],
                            variable_frame_rate=out.payload["variable_frame_rate"])
                await store.ingest(envelopes)
            result = await handle.wait()
        for name in pipelines:
            if name in result.timings:
                await store.finish_run(run_ids[name], "completed")
            elif name in result.failures:
                err = result.failures[name]
                await store.finish_run(run_ids[name], "failed", f"{err.code}: {err.message}")
            elif result.status.value == "failed" and result.pipeline is None and result.error:
                await store.finish_run(run_ids[name], "failed",
                                       f"{result.error.code}: {result.error.message}")
            else:
                await store.finish_run(run_ids[name], "cancelled")
    finally:
        await store.close()
    return {"asset_id": asset_id, "job_id": job_id, "status": result.status.value,
            "counts": result.counts, "timings": result.timings, "stats": result.stats,
            "runs": run_ids, "error": result.error.model_dump() if result.error else None,
            "failures": {k: v.model_dump() for k, v in result.failures.items()}}


def annotate_cmd(
    video: Path = typer.Argument(..., help="Video file to annotate."),
    pipelines: str = typer.Option("metadata,scenes", "--pipelines", "-p",
                                  help="Comma-separated pipelines."),
    profile: str = typer.Option("balanced", "--profile", help="fast, balanced or high_quality."),
    options: str = typer.Option("{}", "--options",
                                help='JSON options per pipeline, e.g. {"scenes":{"threshold":20}}'),
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run pipelines on a local video in this machine and store the results (no network)."""
    settings = settings_from(config)
    if not video.is_file():
        fail(f"VIDEO_ERROR: video file not found: {video}")
    try:
        opts = json.loads(options)
    except json.JSONDecodeError as exc:
        fail(f"OPTIONS_ERROR: --options is not JSON ({exc.msg})")
    if not isinstance(opts, dict):
        fail('OPTIONS_ERROR: --options must be a JSON object like {"scenes": {...}}')
    names = [p.strip() for p in pipelines.split(",") if p.strip()]
    try:
        for name in names:
            DEFAULT_REGISTRY.get(name)
        summary = asyncio.run(annotate_video(settings, video.resolve(), names, profile, opts))
    except RtcAnnotatorError as exc:
        fail_with(exc)
    if as_json:
        print_json(summary)
    else:
        counts = ", ".join(f"{k}={v}" for k, v in summary["counts"].items())
        typer.echo(f"{summary['status']}: asset {summary['asset_id'][:12]} ({counts})")
        for name, stats in summary["stats"].items():
            if "gate" in stats:
                g = stats["gate"]
                typer.echo(f"{name} gate: {g['frames']} frames, {g['full_reads']} read whole, "
                           f"{g['band_reads']} in part, {g['calls_saved']} model calls saved")
        errors = list(summary["failures"].values()) or (
            [summary["error"]] if summary["error"] else [])
        for err in errors:
            typer.echo(f"error: {err['code']}: {err['message']} -- {err['hint']}", err=True)
    if summary["status"] != "completed":
        raise typer.Exit(EXIT_FAILURE)


def register(root: typer.Typer) -> None:
    """Mount `pipelines`, `models` and the top-level `annotate` command on the root app."""
    from rtc_annotator.commands import models_cmd

    models_cmd.register(models_app)
    root.add_typer(app, name="pipelines")
    root.add_typer(models_app, name="models")
    root.command("annotate")(annotate_cmd)
