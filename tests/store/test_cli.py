"""The store CLI commands against a real SQLite store."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtc_annotator.cli import app
from rtc_annotator.store import Store
from tests.store.conftest import env


@pytest.fixture
def video_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video, but bytes to hash")
    asset = hashlib.sha256(video.read_bytes()).hexdigest()
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}"
    monkeypatch.setenv("RTC_ANNOTATOR_DATABASE_URL", url)
    monkeypatch.setenv("RTC_ANNOTATOR_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")

    async def seed() -> None:
        store = await Store.open(url)
        await store.upsert_asset(asset, "clip.mp4", 37)
        await store.ingest([
            env(asset, "transcript.segment", 1000, 2000, text="gradient descent", ordinal=0),
            env(asset, "object.detection", 500, label="dog", ordinal=1),
            env(asset, "object.detection", 800, label="cat", run_id="run-2", ordinal=2),
        ])
        await store.close()

    asyncio.run(seed())
    return video, asset


def test_results_jump_find_export_select(video_db: tuple[Path, str], tmp_path: Path) -> None:
    video, asset = video_db
    runner = CliRunner()
    res = runner.invoke(app, ["results", str(video), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["video"]["asset_id"] == asset
    res = runner.invoke(app, ["jump", asset, "--kind", "object", "--from-ms", "0", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["payload"]["label"] == "cat"
    res = runner.invoke(app, ["select", "set", asset, "object", "pinned", "--run-id", "run-1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["jump", asset, "--kind", "object", "--json"])
    assert json.loads(res.output)["payload"]["label"] == "dog"
    res = runner.invoke(app, ["jump", asset, "--kind", "object", "--from-ms", "900"])
    assert res.exit_code == 1
    res = runner.invoke(app, ["find", str(video), "'gradient'; --"])
    assert res.exit_code == 0 and "[gradient]" in res.output
    res = runner.invoke(app, ["find", str(video), "!!!"])
    assert res.exit_code == 1 and "QUERY_ERROR" in res.output
    out = tmp_path / "t.vtt"
    res = runner.invoke(app, ["export", asset, "--format", "vtt", "-o", str(out)])
    assert res.exit_code == 0 and out.read_text().startswith("WEBVTT")
    res = runner.invoke(app, ["export", asset, "--format", "pdf", "-o", str(out)])
    assert res.exit_code == 1 and "EXPORT_ERROR" in res.output
    res = runner.invoke(app, ["select", "set", asset, "object", "pinned"])
    assert res.exit_code == 2 and "run_id" in res.output
    res = runner.invoke(app, ["db", "upgrade"])
    assert res.exit_code == 0
    res = runner.invoke(app, ["results", str(tmp_path / "missing.mp4")])
    assert res.exit_code != 0
