"""Long-term Ed25519 keys on disk: a node's own key, its vouch, the room admin's key.

* A worker (and, with ``[trust] client_key = true``, a client) has a key pair at
  ``[trust] key_path`` (default ``identity.key`` next to the config file), created on first use
  with mode 0600. Its public key is what the room admin vouches for.
* The worker presents the vouch kept at ``[trust] vouch_path`` (default: the key path with
  ``.vouch``): one line written by ``rtc-annotator trust vouch`` on the admin's machine.
* The admin key (``rtc-annotator trust admin-init``) stays on the admin's machine; clients hold
  only its public key in ``[trust] admin_public_keys``.

The proofs themselves are :mod:`rtc_annotator.protocol.auth` (sans-I/O).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from rtc_annotator.config import user_data_dir
from rtc_annotator.errors import ConfigError
from rtc_annotator.logs import get_logger
from rtc_annotator.protocol import auth

_log = get_logger(__name__)


@dataclass(frozen=True)
class LocalIdentity:
    """This node's key and (workers) the admin's vouch for it."""

    key: Ed25519PrivateKey
    vouch: str | None = None

    @property
    def public_key(self) -> str:
        return auth.public_key_text(self.key)


@dataclass(frozen=True)
class TrustPolicy:
    """What a client demands of the worker it connects to."""

    admin_public_keys: tuple[str, ...] = ()
    require_vouched: bool = False
    room: str | None = None
    """The room the vouch must name (None: any)."""


def key_path(settings: Any) -> Path:
    """``[trust] key_path``, else ``identity.key`` next to the config file, else in the user
    data dir."""
    if settings.trust.key_path is not None:
        return Path(settings.trust.key_path)
    if settings.source is not None:
        return Path(settings.source).parent / "identity.key"
    return user_data_dir() / "identity.key"


def vouch_path(settings: Any) -> Path:
    if settings.trust.vouch_path is not None:
        return Path(settings.trust.vouch_path)
    return key_path(settings).with_suffix(".vouch")


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """PEM, created with mode 0600 (never readable by others, even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key {path} ({exc.strerror})",
                          hint="check [trust] key_path") from None
    if os.stat(path).st_mode & 0o077:
        _log.warning("key file is readable by others", ctx={"path": str(path)})
    try:
        key = load_pem_private_key(data, password=None)
    except ValueError:
        raise ConfigError(f"{path} is not a PEM private key",
                          hint="point [trust] key_path at a key this tool created") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key", hint="create one with this tool")
    return key


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The key at ``path``; a new one (mode 0600) when there is none yet."""
    if not path.exists():
        try:
            write_private_key(path, Ed25519PrivateKey.generate())
        except FileExistsError:
            if not path.is_file():  # the folder itself could not be made
                raise ConfigError(f"cannot create key {path} (a file is in the way)",
                                  hint="set [trust] key_path to a writable place") from None
            # else another process made it a moment ago
        except OSError as exc:
            raise ConfigError(f"cannot create key {path} ({exc.strerror})",
                              hint="set [trust] key_path to a writable place") from None
        else:
            _log.info("new node key created", ctx={"path": str(path)})
    return read_private_key(path)


def load_identity(settings: Any) -> LocalIdentity:
    """This node's key (created on first use) and the vouch next to it, if any.

    When no ``key_path`` is configured and the config file's folder is read-only (a container
    mounting its config read-only), the key is made in the user data dir instead, with a
    warning: a key made there anew on every start cannot stay vouched for."""
    path = key_path(settings)
    try:
        key = load_or_create_key(path)
    except ConfigError:
        if settings.trust.key_path is not None or path == user_data_dir() / "identity.key":
            raise
        fallback = user_data_dir() / "identity.key"
        _log.warning("cannot create the node key next to the config, using the user data dir",
                     ctx={"wanted": str(path), "path": str(fallback),
                          "hint": "set [trust] key_path to a persistent writable file"})
        key = load_or_create_key(fallback)
    vpath = vouch_path(settings)
    vouch: str | None = None
    if vpath.exists():
        try:
            vouch = vpath.read_text(encoding="ascii").strip() or None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read vouch {vpath} ({exc})",
                              hint="write the line `rtc-annotator trust vouch` printed") from None
    identity = LocalIdentity(key=key, vouch=vouch)
    if vouch is not None:
        try:
            stated = auth.read_vouch(vouch)
        except auth.AuthFailed as exc:
            raise ConfigError(f"{vpath}: {exc.message}", hint=exc.hint) from None
        if stated.public_key != identity.public_key:
            raise ConfigError(f"{vpath} vouches for another key ({stated.public_key[:20]}...)",
                              hint="ask the admin to vouch for `rtc-annotator trust show-key`")
    return identity


def policy(settings: Any, room: str | None) -> TrustPolicy:
    """The client's demands from ``[trust]``; ``room`` is the room the client joined."""
    for text in settings.trust.admin_public_keys:
        try:
            auth.parse_public_key(text)
        except auth.AuthFailed as exc:
            raise ConfigError(f"[trust] admin_public_keys: {exc.message}", hint=exc.hint) from None
    if settings.trust.require_vouched and not settings.trust.admin_public_keys:
        raise ConfigError("[trust] require_vouched is on but admin_public_keys is empty",
                          hint="add the room admin's public key (`trust admin-init` printed it)")
    return TrustPolicy(admin_public_keys=tuple(settings.trust.admin_public_keys),
                       require_vouched=settings.trust.require_vouched, room=room)
