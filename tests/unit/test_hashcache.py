"""A video's sha256 is remembered across runs by (path, size, mtime_ns), and only while those
match; a broken cache file is ignored, never fatal."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtc_annotator import hashcache


def test_hit_miss_and_invalidation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache" / "sha256.json"
    video = tmp_path / "v.mp4"
    video.write_bytes(b"a" * 1000)
    calls: list[Path] = []
    real = hashcache.sha256_of

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(hashcache, "sha256_of", counting)
    first = hashcache.cached_sha256(video, cache)
    assert first == hashlib.sha256(b"a" * 1000).hexdigest()
    assert hashcache.cached_sha256(video, cache) == first and len(calls) == 1     # cached
    assert json.loads(cache.read_text())[str(video.resolve())][2] == first

    st = video.stat()
    video.write_bytes(b"b" * 1000)                       # same size, new content
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert hashcache.cached_sha256(video, cache) == hashlib.sha256(b"b" * 1000).hexdigest()
    assert len(calls) == 2

    st = video.stat()
    video.write_bytes(b"c" * 1001)                       # new size, mtime put back
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert hashcache.cached_sha256(video, cache) == hashlib.sha256(b"c" * 1001).hexdigest()
    assert len(calls) == 3


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '{"x": "y"}'])
def test_broken_cache_is_ignored_and_rewritten(tmp_path: Path, content: str) -> None:
    cache = tmp_path / "sha256.json"
    cache.write_text(content)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    assert hashcache.cached_sha256(video, cache) == hashlib.sha256(b"x").hexdigest()
    assert str(video.resolve()) in json.loads(cache.read_text())


def test_poisoned_entry_is_not_trusted(tmp_path: Path) -> None:
    cache = tmp_path / "sha256.json"
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    st = video.stat()
    cache.write_text(json.dumps({str(video.resolve()): [st.st_size, st.st_mtime_ns, "zz"]}))
    assert hashcache.cached_sha256(video, cache) == hashlib.sha256(b"x").hexdigest()


def test_unwritable_cache_still_answers(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    assert hashcache.cached_sha256(video, blocker / "sub" / "sha256.json") == (
        hashlib.sha256(b"x").hexdigest())


def test_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashcache, "MAX_ENTRIES", 3)
    cache = tmp_path / "sha256.json"
    for i in range(5):
        (tmp_path / f"{i}.mp4").write_bytes(bytes([i]))
        hashcache.cached_sha256(tmp_path / f"{i}.mp4", cache)
    kept = json.loads(cache.read_text())
    assert [Path(k).name for k in kept] == ["2.mp4", "3.mp4", "4.mp4"]


def test_results_command_uses_the_cache_across_runs(tmp_path: Path) -> None:
    """Two `results` runs (separate processes): the second finds the hash in the user cache."""
    video = tmp_path / "v.mp4"
    video.write_bytes(os.urandom(4096))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg-cache"), RTC_ANNOTATOR_CONFIG=os.devnull,
               RTC_ANNOTATOR_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 's.sqlite3'}")
    cmd = [sys.executable, "-m", "rtc_annotator", "results", str(video), "--json"]
    subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    cache = tmp_path / "xdg-cache" / "rtc-annotator" / "sha256.json"
    entry = json.loads(cache.read_text())[str(video.resolve())]
    assert entry[2] == hashlib.sha256(video.read_bytes()).hexdigest()
    # a planted (wrong) hash for the unchanged file is what the next run uses: it was not rehashed
    cache.write_text(json.dumps({str(video.resolve()): [entry[0], entry[1], "0" * 64]}))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert "0" * 64 in r.stdout + r.stderr
