"""A video's sha256 (its asset id), remembered across runs by (path, size, mtime_ns).

``results``, ``jump``, ``find`` and ``export`` take a video file and need its asset id; hashing a
multi-gigabyte file on every call is what made them slow. The cache is one small JSON file in
the user cache directory (``<user cache dir>/rtc-annotator/sha256.json``): an entry counts only
while the file's size and modification time (nanoseconds) are unchanged, so an edited or
replaced file is hashed again. A cache that cannot be read is ignored and one that cannot be
written is skipped: the answer is the same, only slower. Writes go through a temporary file and
an atomic rename, so two commands at once never leave a torn file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from rtc_annotator.config import user_cache_dir
from rtc_annotator.logs import get_logger

log = get_logger(__name__)

MAX_ENTRIES = 4096
"""The oldest entries go first beyond this many (a few hundred KiB of JSON)."""

_HEX = frozenset("0123456789abcdef")


def default_path() -> Path:
    return user_cache_dir() / "sha256.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load(cache: Path) -> dict[str, list[object]]:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _valid(entry: object, size: int, mtime_ns: int) -> str | None:
    if (isinstance(entry, list) and len(entry) == 3 and entry[0] == size and entry[1] == mtime_ns
            and isinstance(entry[2], str) and len(entry[2]) == 64 and set(entry[2]) <= _HEX):
        return entry[2]
    return None


def _store(cache: Path, data: dict[str, list[object]]) -> None:
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".sha256.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, separators=(",", ":"))
            os.replace(tmp, cache)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        log.debug("sha256 cache not written", ctx={"path": cache, "error": exc.strerror})


def cached_sha256(path: Path, cache: Path | None = None) -> str:
    """The sha256 of ``path`` (hex), from the cache when size and mtime match, else computed
    and remembered. Raises OSError when ``path`` cannot be read."""
    cache = cache or default_path()
    resolved = path.resolve()
    st = resolved.stat()
    key = str(resolved)
    data = _load(cache)
    hit = _valid(data.get(key), st.st_size, st.st_mtime_ns)
    if hit is not None:
        return hit
    digest = sha256_of(resolved)
    data = _load(cache)  # another command may have written meanwhile
    data.pop(key, None)
    data[key] = [st.st_size, st.st_mtime_ns, digest]
    while len(data) > MAX_ENTRIES:
        data.pop(next(iter(data)))
    _store(cache, data)
    return digest
