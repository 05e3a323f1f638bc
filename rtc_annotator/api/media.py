"""Which file on this machine holds a video of the store (for ``GET /v1/videos/{id}/media``).

The URL names only the asset id (64 hex digits); the path never comes from the request. The
candidates are the paths recorded for that asset in the local job registry (``JobRecord.video``,
written by ``submit`` and by ``serve``'s own jobs). A candidate on a configured storage backend
is turned into ``(backend, user_subdir, relative_path)`` and resolved again through
:class:`~rtc_annotator.storage.StorageResolver`, which rejects ``..``, symlinks leading out of
the base path and the rest of the storage rules; a candidate on no backend must be an absolute
path to a regular file. Whatever the candidate, it is served only when its size and its sha256
are those of the asset (the hash is computed once per (path, size, mtime) and cached), so a file
replaced since the job is never shown as that video.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

from rtc_annotator.client.jobs import JobRegistry
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.hashcache import sha256_of
from rtc_annotator.logs import get_logger
from rtc_annotator.storage import StorageResolver

log = get_logger(__name__)


class VideoNotHere(RtcAnnotatorError):
    """No file on this machine is the video of that asset."""

    code = "VIDEO_NOT_HERE"
    default_hint = ("the video file is not on this machine (or changed since it was annotated); "
                    "the results are still shown without it")


@dataclass
class MediaLocator:
    """Finds the file of an asset among the paths recorded for it."""

    registry: JobRegistry | None
    resolver: StorageResolver | None = None
    _hashes: dict[tuple[str, int, int], str] = field(default_factory=dict)
    _found: dict[str, str] = field(default_factory=dict)
    """asset id -> the recorded path that matched last time (checked again on each use)."""

    async def candidates(self, asset_id: str) -> list[str]:
        if self.registry is None:
            return []
        records = await self.registry.list()
        seen: list[str] = []
        for r in reversed(records):  # newest first
            if r.asset_id == asset_id and r.video not in seen:
                seen.append(r.video)
        return seen

    def _checked_path(self, recorded: str) -> Path | None:
        """The recorded path after the storage rules, or None when it breaks them."""
        path = Path(recorded)
        if not path.is_absolute():
            return None
        if self.resolver is not None:
            try:
                loc = self.resolver.locate(path)
                if loc is not None:
                    return self.resolver.resolve(loc.storage_backend, loc.user_subdir,
                                                 loc.relative_path)
            except RtcAnnotatorError as exc:
                log.warning("recorded video path refused by the storage rules",
                            ctx={"code": exc.code})
                return None
        return path if path.is_file() else None

    def _matches(self, path: Path, asset_id: str, size: int | None) -> bool:
        try:
            st = path.stat()
        except OSError:
            return False
        if not os.path.isfile(path) or (size is not None and st.st_size != size):
            return False
        key = (str(path), st.st_size, st.st_mtime_ns)
        digest = self._hashes.get(key)
        if digest is None:
            digest = sha256_of(path)
            self._hashes[key] = digest
        return digest == asset_id

    async def find(self, asset_id: str, size: int | None) -> Path:
        """The file of ``asset_id`` on this machine; :class:`VideoNotHere` otherwise.

        A video element asks again for every range: the path that matched last time is tried
        first (same checks; its hash is cached while size and mtime stay the same)."""
        last = self._found.get(asset_id)
        if last is not None:
            path = await asyncio.to_thread(self._checked_path, last)
            if path is not None and await asyncio.to_thread(self._matches, path, asset_id, size):
                return path
            del self._found[asset_id]
        for recorded in await self.candidates(asset_id):
            path = await asyncio.to_thread(self._checked_path, recorded)
            if path is not None and await asyncio.to_thread(self._matches, path, asset_id, size):
                self._found[asset_id] = recorded
                return path
        raise VideoNotHere("the video file of this asset is not on this machine")
