"""Fixtures shared by the whole suite.

* ``pg_url``: URL of the throwaway PostgreSQL started by ``make test``
  (``RTC_ANNOTATOR_TEST_PG_URL``). Unreachable PostgreSQL fails the test under ``CI=true`` and
  skips it, with the reason, on a developer's machine.
* ``make_video``: builds small test videos with ffmpeg's lavfi sources.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests may not be skipped)")
    pytest.skip(reason)


def _pg_reachable(url: str) -> bool:
    import asyncpg  # type: ignore[import-untyped]

    parsed = urlparse(url.replace("postgresql+asyncpg://", "postgresql://"))

    async def probe() -> bool:
        conn = await asyncpg.connect(
            host=parsed.hostname, port=parsed.port, user=parsed.username or "postgres",
            database=(parsed.path or "/postgres").lstrip("/") or "postgres", timeout=5,
        )
        await conn.close()
        return True

    try:
        return asyncio.run(probe())
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = os.environ.get("RTC_ANNOTATOR_TEST_PG_URL")
    if not url:
        _unavailable("RTC_ANNOTATOR_TEST_PG_URL is not set: run the suite with `make test`")
    assert url is not None
    if not _pg_reachable(url):
        _unavailable(f"PostgreSQL at {url} is unreachable")
    return url


VideoFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.fail("ffmpeg is not installed: `make test` installs it (scripts/ensure-system-deps.sh)")
    return exe


@pytest.fixture(scope="session")
def make_video(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> VideoFactory:
    """``make_video(colors=("red","blue"), seconds_each=1.0, fps=25, size="160x120", audio=False)``

    Builds an H.264 MP4 whose picture is a solid colour changing at known times (hard cuts at
    ``seconds_each * k``). Results are cached per argument set for the session.
    """
    cache: dict[tuple[object, ...], Path] = {}
    root = tmp_path_factory.mktemp("videos")

    def build(
        colors: tuple[str, ...] = ("red", "blue", "green"),
        seconds_each: float = 1.0,
        fps: int = 25,
        size: str = "160x120",
        audio: bool = False,
        name: str | None = None,
    ) -> Path:
        key = (colors, seconds_each, fps, size, audio, name)
        if key in cache:
            return cache[key]
        out = root / (name or f"v{len(cache)}.mp4")
        args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
        for color in colors:
            args += ["-f", "lavfi", "-i", f"color=c={color}:s={size}:r={fps}:d={seconds_each}"]
        n = len(colors)
        if audio:
            total = seconds_each * n
            args += ["-f", "lavfi", "-t", str(total), "-i", "sine=frequency=440:sample_rate=16000"]
        filt = "".join(f"[{i}:v]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
        args += ["-filter_complex", filt, "-map", "[v]"]
        if audio:
            args += ["-map", f"{n}:a", "-c:a", "aac"]
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)]
        subprocess.run(args, check=True)
        cache[key] = out
        return out

    return build
