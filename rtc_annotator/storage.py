"""Storage backends: the only place where path pieces from a user or a peer become paths.

A *storage backend* is a named filesystem that several machines mount, each under its own
``base_path`` (a laptop's ``/Volumes/vast`` and a cluster's ``/mnt/vast`` are the same backend
``vast``). On the wire a file on a backend is ``(storage_backend, user_subdir, relative_path)``;
each side turns that into a local path with :meth:`StorageResolver.resolve`, and turns a local
absolute path into the triple with :meth:`StorageResolver.to_relative`.

Wire path rules (``user_subdir`` and ``relative_path``):

* components are separated by ``/`` only. A ``\\`` is rejected: it is a legal character in POSIX
  file names, so guessing would make a Windows client's path name a different file on a Linux
  worker. Clients convert native Windows separators before sending (``to_relative`` does).
* no absolute paths (``/x``), Windows drive letters (``C:``), UNC paths (``//server``), empty
  components (``a//b``, trailing ``/``), ``.`` or ``..`` components, NUL or other control
  characters, components over 255 bytes or paths over 4096 bytes.
* ``user_subdir`` may be empty (the file lies directly under the base path); ``relative_path``
  may not.
* after joining, the real path (symlinks followed) must stay inside the real base path.
"""

from __future__ import annotations

import ntpath
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from rtc_annotator.errors import NotUnderAnyBackend, PathRejected, UnknownBackend

MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_BACKEND_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_backend_name(name: str) -> str:
    """Backend names are short identifiers: letters, digits, ``_ . -``."""
    if not isinstance(name, str) or not _BACKEND_NAME_RE.match(name):
        raise PathRejected(
            f"invalid storage backend name {name!r}",
            hint="use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return name


def split_wire_path(value: str, *, what: str, allow_empty: bool) -> tuple[str, ...]:
    """Check one wire path piece and return its components.

    ``what`` names the field in error messages (``user_subdir`` or ``relative_path``).
    """
    if not isinstance(value, str):
        raise PathRejected(f"{what} must be a string, got {type(value).__name__}")
    if value == "":
        if allow_empty:
            return ()
        raise PathRejected(f"{what} is empty", hint=f"give the file's path as {what}")
    if "\x00" in value:
        raise PathRejected(f"{what} contains a NUL byte")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise PathRejected(f"{what} contains a control character")
    if len(value.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise PathRejected(f"{what} is longer than {MAX_PATH_BYTES} bytes")
    if value.startswith(("//", "\\\\")):
        raise PathRejected(
            f"{what} {value!r} is a UNC path", hint="send a path relative to the backend"
        )
    if "\\" in value:
        raise PathRejected(
            f"{what} {value!r} contains a backslash",
            hint="paths on the wire use '/' as separator; convert Windows paths before sending",
        )
    if _DRIVE_RE.match(value):
        raise PathRejected(
            f"{what} {value!r} starts with a drive letter",
            hint="send a path relative to the backend",
        )
    if value.startswith("/"):
        raise PathRejected(
            f"{what} {value!r} is absolute", hint="send a path relative to the backend"
        )
    parts = tuple(value.split("/"))
    for part in parts:
        if part == "":
            raise PathRejected(f"{what} {value!r} has an empty component ('//' or a trailing '/')")
        if part in (".", ".."):
            raise PathRejected(f"{what} {value!r} has a '{part}' component")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
            raise PathRejected(f"{what} has a component longer than {MAX_COMPONENT_BYTES} bytes")
    return parts


def legacy_storage_tables(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``SHARED_STORAGE_ROOT`` (the single-root setting of earlier versions) as storage tables.

    Only used when the configuration has no ``[storage.*]`` section at all.
    """
    root = env.get("SHARED_STORAGE_ROOT")
    if not root:
        return {}
    return {
        "default": {
            "base_path": Path(root),
            "type": "local",
            "description": "from SHARED_STORAGE_ROOT",
        }
    }


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass(frozen=True)
class StorageBackend:
    """One named shared filesystem as mounted on this machine."""

    name: str
    """Name shared by every machine that mounts this filesystem (e.g. ``vast``)."""
    base_path: Path
    """Where this machine mounts it. Never sent to a peer."""
    type: str = "local"
    """Free-form kind shown to peers and admins: ``nfs``, ``vast``, ``local``, ``s3fs``..."""
    description: str = ""
    """Human description shown in listings."""
    user_subdir: str = ""
    """Default ``user_subdir`` used by the client when none is given."""

    def __post_init__(self) -> None:
        validate_backend_name(self.name)
        base = Path(self.base_path).expanduser()
        if not base.is_absolute():
            raise PathRejected(
                f"base_path {str(self.base_path)!r} of storage backend {self.name!r} "
                "is not absolute",
                hint="give the mount point as an absolute path",
            )
        object.__setattr__(self, "base_path", Path(os.path.normpath(base)))
        if self.user_subdir:
            split_wire_path(self.user_subdir, what="user_subdir", allow_empty=True)

    def resolve_path(self, user_subdir: str, relative_path: str) -> Path:
        """Join wire path pieces under the base path, rejecting anything that could escape it."""
        sub = split_wire_path(user_subdir, what="user_subdir", allow_empty=True)
        rel = split_wire_path(relative_path, what="relative_path", allow_empty=False)
        joined = self.base_path.joinpath(*sub, *rel)
        return self.validate_path(joined)

    def validate_path(self, resolved: Path | str) -> Path:
        """Return ``resolved`` if its real path (symlinks followed) stays inside the base path."""
        candidate = Path(resolved)
        if not candidate.is_absolute():
            raise PathRejected(f"path {str(resolved)!r} is not absolute")
        real_base = Path(os.path.realpath(self.base_path))
        real = Path(os.path.realpath(candidate))
        if not _is_within(real, real_base):
            raise PathRejected(
                f"path leaves storage backend {self.name!r} (through '..' or a symlink)",
                hint="the file must lie inside the backend's base path",
            )
        return candidate

    def public_info(self) -> dict[str, str]:
        """What may be told to peers: name and type, never the local base path."""
        return {"name": self.name, "type": self.type}


@dataclass
class StorageConfig:
    """The set of storage backends this machine mounts."""

    backends: dict[str, StorageBackend] = field(default_factory=dict)

    @classmethod
    def from_toml(
        cls, config_data: Mapping[str, Any], *, env: Mapping[str, str] | None = None
    ) -> StorageConfig:
        """Build from a parsed TOML document (its ``[storage.<name>]`` tables).

        With no ``[storage.*]`` table and ``SHARED_STORAGE_ROOT`` set in ``env`` (default: the
        process environment), one backend named ``default`` is made with that base path.
        Configuration errors are reported by :mod:`rtc_annotator.config`; this accepts either raw
        tables or already-validated settings objects.
        """
        environ = os.environ if env is None else env
        tables = config_data.get("storage") or {}
        backends: dict[str, StorageBackend] = {}
        for name, table in tables.items():
            data = table if isinstance(table, Mapping) else table.model_dump()
            backends[name] = StorageBackend(
                name=name,
                base_path=Path(data["base_path"]),
                type=data.get("type", "local"),
                description=data.get("description", ""),
                user_subdir=data.get("user_subdir", ""),
            )
        if not backends:
            legacy = legacy_storage_tables(environ)
            for name, data in legacy.items():
                backends[name] = StorageBackend(name=name, **data)
        return cls(backends)

    @classmethod
    def of(cls, backends: Iterable[StorageBackend]) -> StorageConfig:
        return cls({b.name: b for b in backends})

    def has_backend(self, name: str) -> bool:
        return name in self.backends

    def get(self, name: str) -> StorageBackend:
        try:
            return self.backends[name]
        except KeyError:
            known = ", ".join(sorted(self.backends)) or "none"
            raise UnknownBackend(
                f"storage backend {name!r} is not configured here (configured: {known})",
                hint=f"add a [storage.{name}] section with its base_path, or send the file",
            ) from None

    def resolve_path(self, backend: str, user_subdir: str, relative_path: str) -> Path:
        return self.get(backend).resolve_path(user_subdir, relative_path)

    def list_backends(self) -> list[str]:
        return sorted(self.backends)

    def public_info(self) -> list[dict[str, str]]:
        return [self.backends[n].public_info() for n in self.list_backends()]


@dataclass(frozen=True)
class RelativeLocation:
    """A file on a backend as it travels on the wire."""

    storage_backend: str
    user_subdir: str
    relative_path: str


class StorageResolver:
    """Turns wire locations into local paths and local paths into wire locations."""

    def __init__(self, config: StorageConfig) -> None:
        self.config = config

    def resolve(self, backend: str, user_subdir: str, relative_path: str) -> Path:
        return self.config.resolve_path(backend, user_subdir, relative_path)

    def to_relative(
        self, absolute_path: str | os.PathLike[str], backend: str | None = None
    ) -> tuple[str, str, str]:
        """Return ``(backend, user_subdir, relative_path)`` for a local absolute path.

        Without ``backend``, the backend with the longest base path containing the file wins.
        ``user_subdir`` is the backend's configured default when the path starts with it,
        otherwise the first directory under the base path (``alice`` in
        ``/mnt/vast/alice/clips/a.mp4``); ``relative_path`` is the rest, with ``/`` separators.
        """
        raw = os.fspath(absolute_path)
        if "\x00" in raw:
            raise PathRejected("path contains a NUL byte")
        if ntpath.splitdrive(raw)[0] and os.name == "nt":  # pragma: no cover - Windows only
            parts = PureWindowsPath(raw).parts
            raw = "/".join(parts)
        path = Path(os.path.abspath(os.path.expanduser(raw)))
        if backend is not None:
            candidates = [self.config.get(backend)]
        else:
            candidates = list(self.config.backends.values())
        best: StorageBackend | None = None
        for cand in candidates:
            if _is_within(path, cand.base_path) and path != cand.base_path:
                if best is None or len(cand.base_path.parts) > len(best.base_path.parts):
                    best = cand
        if best is None:
            where = f"backend {backend!r}" if backend else "any configured storage backend"
            raise NotUnderAnyBackend(f"{path} is not under {where}")
        rest = PurePosixPath(*path.relative_to(best.base_path).parts)
        parts = rest.parts
        user_subdir = ""
        sub_parts = tuple(best.user_subdir.split("/")) if best.user_subdir else ()
        if sub_parts and parts[: len(sub_parts)] == sub_parts and len(parts) > len(sub_parts):
            user_subdir = best.user_subdir
            parts = parts[len(sub_parts) :]
        elif len(parts) > 1:
            user_subdir, parts = parts[0], parts[1:]
        relative_path = "/".join(parts)
        # Whatever we produce must be accepted by the other side's resolver.
        best.resolve_path(user_subdir, relative_path)
        return best.name, user_subdir, relative_path

    def locate(self, absolute_path: str | os.PathLike[str]) -> RelativeLocation | None:
        """Like :meth:`to_relative` but ``None`` when the file is on no backend."""
        try:
            return RelativeLocation(*self.to_relative(absolute_path))
        except NotUnderAnyBackend:
            return None
