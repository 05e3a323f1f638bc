"""Exporters over a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from rtc_annotator.exporters import ExportError, export
from rtc_annotator.store import Store
from tests.store.conftest import env, new_asset


async def _collect(store: Store, asset: str, fmt: str) -> bytes:
    return b"".join([chunk async for chunk in export(store, asset, fmt)])


async def _video(store: Store) -> str:
    asset = new_asset()
    await store.ingest([
        env(asset, "transcript.segment", 1500, 3250, text="hello there", ordinal=0),
        env(asset, "transcript.segment", 3_725_004, 3_726_000, text="bye\n\nnow", ordinal=1),
        env(asset, "object.detection", 40, label="dog", confidence=0.5, ordinal=2),
        env(asset, "object.detection", 40, label="cat", confidence=0.6, ordinal=3),
        env(asset, "object.detection", 80, label="dog", ordinal=4),
        env(asset, "video.metadata", 0, 5000, ordinal=5),
        env(asset, "scene", 0, 100, run_id="old", ordinal=6),
    ])
    return asset


async def test_vtt_and_srt(store: Store) -> None:
    asset = await _video(store)
    vtt = (await _collect(store, asset, "vtt")).decode()
    assert vtt == ("WEBVTT\n\n"
                   "NOTE rtc-annotator: transcript.segment only; not included: "
                   "object.detection, scene, video.metadata (export jsonl for every artifact)\n\n"
                   "00:00:01.500 --> 00:00:03.250\nhello there\n\n"
                   "01:02:05.004 --> 01:02:06.000\nbye\nnow\n\n")
    srt = (await _collect(store, asset, "srt")).decode()
    assert srt.startswith("1\n00:00:01,500 --> 00:00:03,250\nhello there\n\n2\n01:02:05,004")


async def test_coco(store: Store) -> None:
    asset = await _video(store)
    doc = json.loads(await _collect(store, asset, "coco"))
    assert [i["frame_pts_ms"] for i in doc["images"]] == [40, 80]
    assert {c["name"] for c in doc["categories"]} == {"dog", "cat"}
    assert len(doc["annotations"]) == 3
    first = doc["annotations"][0]
    assert first["bbox"] == pytest.approx([16.0, 12.0, 64.0, 48.0])  # 160x120 video
    assert doc["info"]["bbox_normalised"] is False
    assert doc["info"]["skipped_artifact_types"] == ["scene", "transcript.segment",
                                                     "video.metadata"]


async def test_jsonl_and_zip(store: Store) -> None:
    asset = await _video(store)
    lines = (await _collect(store, asset, "jsonl")).decode().splitlines()
    assert len(lines) == 7 and all(json.loads(ln)["asset_id"] == asset for ln in lines)
    data = await _collect(store, asset, "zip")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = set(zf.namelist())
        assert names == {"transcript.vtt", "transcript.srt", "detections.coco.json",
                         "artifacts.jsonl", "manifest.json"}
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["asset"]["asset_id"] == asset
        assert manifest["files"]["artifacts.jsonl"]["bytes"] == len(zf.read("artifacts.jsonl"))
        assert manifest["selections"]["scene"]["run_id"] == "old"
    with pytest.raises(ExportError):
        export(store, asset, "pdf")
