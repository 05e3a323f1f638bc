"""`rtc-annotator trust ...`: node keys and the room admin's vouches (see docs/security.md).

On the admin's machine (the admin key never goes to the signaling server)::

    rtc-annotator trust admin-init                      # prints the admin public key
    rtc-annotator trust vouch ed25519:... --name gpu1 --room lab > gpu1.vouch

On each worker: ``rtc-annotator trust show-key`` prints the key to vouch for; put the vouch line
at ``[trust] vouch_path`` (default ``identity.vouch`` next to the config). On each client:
``[trust] admin_public_keys = ["ed25519:..."]`` and ``require_vouched = true``.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rtc_annotator import trust
from rtc_annotator.commands.common import ConfigOption, fail, fail_with, print_json, settings_from
from rtc_annotator.config import user_data_dir
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.protocol import auth

app = typer.Typer(help="Node keys and the room admin's vouches for worker keys.",
                  no_args_is_help=True)

AdminKeyOption = Annotated[
    Path | None,
    typer.Option("--admin-key", help="Admin private key file (default: admin.key in the user "
                 "data dir).", show_default=False),
]


def _admin_path(path: Path | None) -> Path:
    return path or user_data_dir() / "admin.key"


@app.command("admin-init")
def admin_init(admin_key: AdminKeyOption = None) -> None:
    """Create the room admin's key pair (mode 0600) and print its public key."""
    path = _admin_path(admin_key)
    if path.exists():
        fail(f"{path} already exists; its public key: "
             f"{auth.public_key_text(_read(path))} (delete it first to start over)")
    key = Ed25519PrivateKey.generate()
    try:
        trust.write_private_key(path, key)
    except OSError as exc:
        fail(f"cannot write {path} ({exc.strerror}); pass --admin-key PATH")
    sys.stderr.write(f"admin key written to {path}; keep it off the signaling server.\n"
                     "Clients trust it with [trust] admin_public_keys = [\"<the key below>\"]\n")
    typer.echo(auth.public_key_text(key))


def _read(path: Path) -> Ed25519PrivateKey:
    try:
        return trust.read_private_key(path)
    except RtcAnnotatorError as exc:
        fail_with(exc)


@app.command("show-key")
def show_key(config: ConfigOption = None,
             json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
             ) -> None:
    """Print this node's public key (creating the key on first use) and its vouch, if any."""
    settings = settings_from(config)
    try:
        identity = trust.load_identity(settings)
    except RtcAnnotatorError as exc:
        fail_with(exc)
    vouch = auth.read_vouch(identity.vouch) if identity.vouch else None
    if json_out:
        print_json({"public_key": identity.public_key, "key_path": str(trust.key_path(settings)),
                    "vouch_path": str(trust.vouch_path(settings)),
                    "vouch": None if vouch is None else {
                        "name": vouch.name, "room": vouch.room, "expires_at": vouch.expires_at,
                        "admin_key": vouch.admin_key}})
        return
    typer.echo(identity.public_key)
    if vouch is None:
        sys.stderr.write(f"not vouched for: no {trust.vouch_path(settings)}\n")
    else:
        until = dt.datetime.fromtimestamp(vouch.expires_at, dt.UTC).strftime("%Y-%m-%d %H:%M")
        sys.stderr.write(f"vouched for as {vouch.name!r} in room {vouch.room!r} until {until} "
                         f"UTC by {vouch.admin_key}\n")


@app.command("vouch")
def vouch(
    public_key: Annotated[str, typer.Argument(help="The worker's key (`trust show-key`).")],
    name: Annotated[str, typer.Option("--name", help="Worker name the vouch states.")],
    room: Annotated[str, typer.Option("--room", help="Room the worker belongs to.")],
    days: Annotated[float, typer.Option("--days", min=0.001, help="Validity in days.")] = 365.0,
    admin_key: AdminKeyOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the vouch to this file "
                                             "(default: print it).", show_default=False)] = None,
) -> None:
    """Sign a vouch for a worker key with the admin key (run on the admin's machine)."""
    key = _read(_admin_path(admin_key))
    try:
        text = auth.sign_vouch(key, name=name, public_key=public_key, room=room,
                               valid_s=days * 86400)
    except auth.AuthFailed as exc:
        fail_with(exc)
    if out is None:
        typer.echo(text)
        return
    try:
        out.write_text(text + "\n", encoding="ascii")
        os.chmod(out, 0o644)
    except OSError as exc:
        fail(f"cannot write {out} ({exc.strerror})")
    sys.stderr.write(f"vouch written to {out}; copy it to the worker's [trust] vouch_path\n")
