"""`rtc-annotator room ...`: create rooms, issue/revoke tokens, list workers, routing policy."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from rtc_annotator.commands.common import ConfigOption, fail, fail_with, print_json, settings_from
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.redact import register_secret
from rtc_annotator.signaling_client import SignalingClient

app = typer.Typer(help="Manage a room (lab) on the signaling server.", no_args_is_help=True)

T = TypeVar("T")

ADMIN_SECRET_ENV = "SIGNALING_ADMIN_SECRET"

ServerOption = Annotated[
    str | None,
    typer.Option("--server", help="Signaling websocket URL (default: [signaling] url).",
                 show_default=False),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", help="Room admin token (default: [signaling] token).",
                 show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _run(server: str | None, token: str | None, config: Any, *, admin_secret: str | None = None,
         call: Callable[[SignalingClient], Awaitable[T]]) -> T:
    settings = settings_from(config)
    url = server or settings.signaling.url
    if admin_secret is None:
        token = token or settings.signaling.token
        if not token:
            fail("no room token: pass --token or set [signaling] token")

    async def main() -> T:
        client = SignalingClient(url, token=token if admin_secret is None else None,
                                 admin_secret=admin_secret, reconnect=False,
                                 connect_timeout_s=10.0, request_timeout_s=30.0)
        try:
            await client.connect()
            return await call(client)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except RtcAnnotatorError as exc:
        fail_with(exc, code=1)


def _admin_secret(path: Path | None) -> str:
    """The server admin secret: first line of ``path``, else $SIGNALING_ADMIN_SECRET."""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"--admin-secret-file: cannot read {path}: {exc.strerror or exc}")
        secret = text.splitlines()[0].strip() if text.strip() else ""
        if not secret:
            fail(f"--admin-secret-file: {path} is empty; write the secret on its first line")
    else:
        secret = os.environ.get(ADMIN_SECRET_ENV, "")
        if not secret:
            fail(f"no admin secret: set ${ADMIN_SECRET_ENV} or pass --admin-secret-file FILE")
    register_secret(secret)
    return secret


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Room name (letters, digits, ._@:-)."),
    admin_secret_file: Path | None = typer.Option(
        None, "--admin-secret-file", metavar="FILE", show_default=False,
        help="Read the signaling server's admin secret from the first line of FILE "
        "(default: $SIGNALING_ADMIN_SECRET). Never on the command line: `ps` shows it."),
    ttl: int = typer.Option(365 * 86400, "--ttl", help="Admin token lifetime in seconds."),
    server: ServerOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a room; print its admin token.

    The admin secret comes from $SIGNALING_ADMIN_SECRET or --admin-secret-file."""
    admin_secret = _admin_secret(admin_secret_file)
    reply = _run(server, None, config, admin_secret=admin_secret,
                 call=lambda c: c.request("create_room", name=name, ttl_s=ttl))
    if as_json:
        print_json({k: reply[k] for k in ("room", "token", "token_id", "expires_at")})
        return
    typer.echo(f"room {reply['room']} created; admin token (id {reply['token_id']}, "
               f"expires {_when(reply['expires_at'])}):")
    typer.echo(reply["token"])


@app.command("token")
def token_cmd(
    role: str = typer.Option(..., "--role", help="worker, client or admin."),
    ttl: int = typer.Option(30 * 86400, "--ttl", help="Lifetime in seconds."),
    label: str = typer.Option("", "--label", help="Free text shown in server logs."),
    server: ServerOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Issue a token for the room of the admin token."""
    if role not in ("worker", "client", "admin"):
        fail(f"--role must be worker, client or admin, not {role!r}")
    reply = _run(server, token, config,
                 call=lambda c: c.request("issue_token", role=role, ttl_s=ttl, label=label))
    if as_json:
        print_json({k: reply[k] for k in ("room", "role", "token", "token_id", "expires_at")})
        return
    typer.echo(f"{role} token for room {reply['room']} (id {reply['token_id']}, "
               f"expires {_when(reply['expires_at'])}):")
    typer.echo(reply["token"])


@app.command("revoke")
def revoke(
    token_id: str = typer.Argument(..., help="The token id printed when it was issued."),
    server: ServerOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
) -> None:
    """Revoke a token; connections using it are closed."""
    reply = _run(server, token, config,
                 call=lambda c: c.request("revoke_token", token_id=token_id))
    typer.echo(f"revoked {token_id} ({reply.get('closed_connections', 0)} connection(s) closed)")


@app.command("workers")
def workers(
    backend: str | None = typer.Option(None, "--backend", help="Only workers mounting this."),
    pipeline: str | None = typer.Option(None, "--pipeline", help="Only workers offering this."),
    min_gpu_mem: int = typer.Option(0, "--min-gpu-mem", help="Minimum GPU memory in MiB."),
    server: ServerOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the room's online workers and their capabilities."""
    rows = _run(server, token, config, call=lambda c: c.list_workers(
        backend=backend, pipeline=pipeline, min_gpu_memory_mb=min_gpu_mem))
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no matching worker online")
        return
    table = Table("name", "backends", "pipelines", "gpus", "slots free/total", "load",
                  "state", "version")
    for w in rows:
        table.add_row(
            w["name"],
            ", ".join(f"{b['name']} ({b['type']})" for b in w["storage_backends"]) or "-",
            ", ".join(w["pipelines"]) or "-",
            ", ".join(f"{g['name']} {g['memory_mb']} MiB" for g in w["gpus"]) or "cpu",
            f"{w['free_slots']}/{w['job_slots']}", str(w["load"]),
            "draining" if w["draining"] else "online", w["version"] or "-",
        )
    Console(width=160).print(table)


@app.command("policy")
def policy(
    storage: str | None = typer.Option(None, "--storage", help="preferred or strict."),
    strict_backend: list[str] = typer.Option(
        None, "--strict-backend", help="Backend always routed strictly (repeatable)."),
    clear_strict: bool = typer.Option(False, "--clear-strict-backends",
                                      help="Remove all strict backends."),
    max_queue: int | None = typer.Option(None, "--max-queue", help="Queued requests per room."),
    wait_for_workers: bool | None = typer.Option(
        None, "--wait-for-workers/--no-wait-for-workers",
        help="Queue requests no online worker could take (for rooms run by `pool`)."),
    server: ServerOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the routing policy; with options, change it (admin)."""
    if storage is not None and storage not in ("preferred", "strict"):
        fail("--storage must be preferred or strict")

    async def call(c: SignalingClient) -> dict[str, Any]:
        current = dict((await c.request("get_policy"))["policy"])
        changes: dict[str, Any] = {}
        if storage is not None:
            changes["storage"] = storage
        if clear_strict:
            changes["strict_backends"] = []
        if strict_backend:
            base = list(changes["strict_backends"] if "strict_backends" in changes
                        else current["strict_backends"])
            changes["strict_backends"] = sorted(set(base) | set(strict_backend))
        if max_queue is not None:
            changes["max_queue"] = max_queue
        if wait_for_workers is not None:
            changes["wait_for_workers"] = wait_for_workers
        if not changes:
            return current
        return dict((await c.request("set_policy", policy={**current, **changes}))["policy"])

    result = _run(server, token, config, call=call)
    if as_json:
        print_json(result)
        return
    for key, value in result.items():
        typer.echo(f"{key} = {value}")


def _drain(worker: str, drain: bool, server: str | None, token: str | None, config: Any) -> None:
    reply = _run(server, token, config,
                 call=lambda c: c.request("drain", worker=worker, drain=drain))
    state = "draining" if drain else "accepting jobs"
    online = "" if reply.get("online") else " (not online now; applies when it registers)"
    typer.echo(f"{worker}: {state}{online}")


@app.command("drain")
def drain(worker: str = typer.Argument(...), server: ServerOption = None,
          token: TokenOption = None, config: ConfigOption = None) -> None:
    """Stop routing new jobs to a worker (running sessions continue)."""
    _drain(worker, True, server, token, config)


@app.command("undrain")
def undrain(worker: str = typer.Argument(...), server: ServerOption = None,
            token: TokenOption = None, config: ConfigOption = None) -> None:
    """Route jobs to a drained worker again."""
    _drain(worker, False, server, token, config)


@app.command("decisions")
def decisions(
    limit: int = typer.Option(20, "--limit", help="How many, newest last."),
    server: ServerOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recent routing decisions of the room (admin)."""
    rows = _run(server, token, config,
                call=lambda c: c.request("decisions", limit=limit))["decisions"]
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no routing decisions yet")
        return
    table = Table("time", "client", "outcome", "worker", "storage", "reason")
    for d in rows:
        req = d["requirements"]
        storage = req.get("required_storage") or "-"
        if req.get("required_storage"):
            storage += " (strict)" if d["strict"] else ""
        table.add_row(_when(d["at"]), d["client"], d["outcome"], d["worker"] or "-", storage,
                      d["reason"])
    Console(width=160).print(table)
