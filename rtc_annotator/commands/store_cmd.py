"""Store commands: `results`, `jump`, `find`, `export`, `serve` (top level), `db upgrade`,
`select set|show`.

VIDEO is a file path (hashed to its asset id) or an asset id. The database comes from the
config's ``[database] url`` or ``RTC_ANNOTATOR_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import ValidationError

from rtc_annotator.commands.common import ConfigOption, fail, fail_with, print_json, settings_from
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.hashcache import cached_sha256
from rtc_annotator.store import Selection, Store
from rtc_annotator.store.repository import ASSET_ID_RE

T = TypeVar("T")

db_app = typer.Typer(help="Manage the store's database.", no_args_is_help=True)
select_app = typer.Typer(help="Choose which run's results count per video and type.",
                         no_args_is_help=True)


DEFAULT_API_PORT = 8780
"""`serve`'s port: not the signaling server's 8765, so both run on one host as they come."""


def sha256_file(path: Path) -> str:
    if not path.is_file():
        fail(f"{path}: no such file and not an asset id (64 hex digits)")
    try:
        return cached_sha256(path)
    except OSError as exc:
        fail(f"{path}: cannot read: {exc.strerror or exc}")


async def asset_id_for(video: str) -> str:
    """An asset id as given, or the sha256 of the file at that path (hashed in a thread, or
    taken from the cache while the file's size and mtime are unchanged)."""
    if ASSET_ID_RE.match(video):
        return video
    return await asyncio.to_thread(sha256_file, Path(video))


def _with_store(config: Path | None, work: Callable[[Store], Awaitable[T]]) -> T:
    url = settings_from(config).database.url

    async def main() -> T:
        store = await Store.open(url)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except RtcAnnotatorError as exc:
        fail_with(exc, code=1)


def _print_envelope(env: Any, as_json: bool) -> None:
    if as_json:
        print_json(env.model_dump(mode="json"))
        return
    p = env.payload
    what = p.get("label") or p.get("text") or p.get("index", "")
    typer.echo(f"{env.span_start_ms}-{env.span_end_ms} ms  {env.artifact_type}  {what}  "
               f"[{env.artifact_id}]")


def results(
    video: str = typer.Argument(..., help="Video file or asset id."),
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show what the store holds for a video: counts per type, runs, selections."""

    async def work(store: Store) -> dict[str, Any]:
        asset = await asset_id_for(video)
        info = await store.get_asset(asset)
        sel = {}
        for atype in await store.artifact_types(asset):
            s = await store.get_selection(asset, atype)
            sel[atype] = {**s.model_dump(), "selected_run": await store.selected_run(asset, atype)}
        return {"video": info, "runs": await store.runs(asset), "selections": sel}

    out = _with_store(config, work)
    if as_json:
        print_json(out)
        return
    v = out["video"]
    typer.echo(f"{v['asset_id']}  {v['filename'] or '-'}  duration_ms={v['duration_ms']}")
    for atype, n in sorted(v["artifact_counts"].items()):
        s = out["selections"].get(atype, {})
        typer.echo(f"  {atype:20s} {n:8d}  selection={s.get('mode')} "
                   f"run={s.get('selected_run')}")
    for r in out["runs"]:
        typer.echo(f"  run {r['run_id']} {r['pipeline']} {r['model_profile']} {r['status']}")


def jump(
    video: str = typer.Argument(..., help="Video file or asset id."),
    kind: str = typer.Option(..., "--kind", help="scene, object, transcript, ocr."),
    from_ms: int = typer.Option(0, "--from-ms", help="Position in ms."),
    direction: str = typer.Option("next", "--direction", help="next or prev."),
    label: list[str] = typer.Option([], "--label", help="Object label (repeatable)."),
    min_confidence: float | None = typer.Option(None, "--min-confidence", help="0..1."),
    cursor: str | None = typer.Option(None, "--cursor", help="artifact_id to continue from."),
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Jump to the next/previous artifact of a kind (strictly after/before --from-ms)."""
    from rtc_annotator.query import jump as do_jump

    async def work(store: Store) -> Any:
        asset = await asset_id_for(video)
        await store.get_asset(asset)
        return await do_jump(store, asset, kind, from_ms, direction, labels=label or None,
                             min_confidence=min_confidence, cursor=cursor)

    hit = _with_store(config, work)
    if hit is None:
        fail(f"no {kind} {'after' if direction == 'next' else 'before'} {from_ms} ms", code=1)
    _print_envelope(hit, as_json)


def find(
    video: str = typer.Argument(..., help="Video file or asset id."),
    text: str = typer.Argument(..., help="Words; quote a phrase."),
    source: str = typer.Option("all", "--source", help="transcript, ocr or all."),
    from_ms: int = typer.Option(-1, "--from-ms", help="Position in ms."),
    direction: str = typer.Option("next", "--direction", help="next or prev."),
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Find the next/previous transcript or OCR text matching TEXT."""
    from rtc_annotator.query import find as do_find

    async def work(store: Store) -> Any:
        asset = await asset_id_for(video)
        await store.get_asset(asset)
        return await do_find(store, asset, text, from_ms, direction, source=source)

    hit = _with_store(config, work)
    if hit is None:
        fail("no match", code=1)
    if as_json:
        print_json(hit.to_dict())
    else:
        typer.echo(f"{hit.start_ms}-{hit.end_ms} ms  {hit.source}  {hit.snippet}  "
                   f"[{hit.artifact_id}]")


def export(
    video: str = typer.Argument(..., help="Video file or asset id."),
    fmt: str = typer.Option(..., "--format", help="vtt, srt, coco, jsonl or zip."),
    out: Path = typer.Option(..., "-o", "--output", help="Output file ('-' for stdout)."),
    config: ConfigOption = None,
) -> None:
    """Export a video's results."""
    from rtc_annotator.exporters import export as do_export

    async def work(store: Store) -> int:
        asset = await asset_id_for(video)
        await store.get_asset(asset)
        chunks = do_export(store, asset, fmt)
        size = 0
        if str(out) == "-":
            async for chunk in chunks:
                sys.stdout.buffer.write(chunk)
                size += len(chunk)
            return size
        tmp = out.with_name(out.name + ".part")
        with tmp.open("wb") as fh:
            async for chunk in chunks:
                fh.write(chunk)
                size += len(chunk)
        tmp.replace(out)
        return size

    size = _with_store(config, work)
    if str(out) != "-":
        typer.echo(f"wrote {out} ({size} bytes)", err=True)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(DEFAULT_API_PORT, "--port", help="Port."),
    config: ConfigOption = None,
    token_file: Path | None = typer.Option(
        None, "--token-file", help="File holding the access token every API request must "
        "carry (or $RTC_ANNOTATOR_SERVE_TOKEN); required when --host is not a loopback "
        "address."),
) -> None:
    """Serve the web app at / and the HTTP API over the store (OpenAPI at /openapi.json)."""
    import os

    from rtc_annotator.api import run_server
    from rtc_annotator.api.security import is_loopback

    settings = settings_from(config)
    token = os.environ.get("RTC_ANNOTATOR_SERVE_TOKEN") or None
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            fail(f"cannot read --token-file {token_file}: {exc.strerror}")
    if token is None and not is_loopback(host):
        fail(f"--host {host} is reachable from other machines: give an access token with "
             "--token-file FILE or RTC_ANNOTATOR_SERVE_TOKEN (or serve on 127.0.0.1)")
    typer.echo(f"serving the web app at http://{host}:{port}/ "
               f"(API: http://{host}:{port}/openapi.json)", err=True)
    try:
        asyncio.run(run_server(settings, host, port, token=token))
    except RtcAnnotatorError as exc:
        fail_with(exc, code=1)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}", code=1)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Create or migrate the store's schema to the newest version."""

    async def work(store: Store) -> None:
        await store.upgrade()

    _with_store(config, work)
    typer.echo("database is at the newest schema")


@select_app.command("set")
def select_set(
    video: str = typer.Argument(..., help="Video file or asset id."),
    kind: str = typer.Argument(..., help="Artifact kind or type."),
    mode: str = typer.Argument(..., help="default, latest, pinned, profile, best_quality."),
    run_id: str | None = typer.Option(None, "--run-id", help="Run for 'pinned'."),
    profile: str | None = typer.Option(None, "--profile", help="Profile for 'profile'."),
    config: ConfigOption = None,
) -> None:
    """Set which run's results count for a video and type."""
    from rtc_annotator.query import artifact_type_for

    try:
        sel = Selection.model_validate({"mode": mode, "run_id": run_id,
                                        "model_profile": profile})
    except ValidationError as exc:
        fail(f"invalid selection: {exc.errors()[0]['msg']}")

    async def work(store: Store) -> str | None:
        asset = await asset_id_for(video)
        await store.get_asset(asset)
        atype = artifact_type_for(kind)
        await store.set_selection(asset, atype, sel)
        return await store.selected_run(asset, atype)

    run = _with_store(config, work)
    typer.echo(f"selection {mode}: run {run or '-'}")


@select_app.command("show")
def select_show(
    video: str = typer.Argument(..., help="Video file or asset id."),
    config: ConfigOption = None,
) -> None:
    """Show the selection per type and the run it picks."""

    async def work(store: Store) -> dict[str, Any]:
        asset = await asset_id_for(video)
        await store.get_asset(asset)
        out = {}
        for atype in await store.artifact_types(asset):
            s = await store.get_selection(asset, atype)
            out[atype] = {**s.model_dump(), "selected_run": await store.selected_run(asset, atype)}
        return out

    print_json(_with_store(config, work))


def register(app: typer.Typer) -> None:
    """Mount the store commands on the root app."""
    app.command("results")(results)
    app.command("jump")(jump)
    app.command("find")(find)
    app.command("export")(export)
    app.command("serve")(serve)
    app.add_typer(db_app, name="db")
    app.add_typer(select_app, name="select")
