"""Every model pipeline in one networked job through a real worker, on real weights.

The worker advertises the models it holds (name, kind, sha256, a detector's classes); the client
routes by them; `find` hits both the transcript and the OCR text of the job; a job naming a
model no worker holds gets a clear routing error naming the model and the fix.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from rtc_annotator.client.submit import submit_video
from rtc_annotator.query import find
from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.store import Store
from tests.real_models import find_weights, make_lecture, make_models_dir

from .conftest import MakeSettings, StartWorker, fast_link

pytestmark = pytest.mark.timeout(600)
PROFILES = {"fast": {"transcript": "tiny.en", "objects": "people", "ocr": "en"}}


def _iou(a: dict[str, float], b: dict[str, float]) -> float:
    w = max(0.0, min(a["x2"], b["x2"]) - max(a["x1"], b["x1"]))
    h = max(0.0, min(a["y2"], b["y2"]) - max(a["y1"], b["y1"]))
    inter = w * h
    area = ((a["x2"] - a["x1"]) * (a["y2"] - a["y1"]) + (b["x2"] - b["x1"]) * (b["y2"] - b["y1"])
            - inter)
    return inter / area if area > 0 else 0.0


async def test_all_pipelines_in_one_networked_job(
    tmp_path: Path, make_settings: MakeSettings, start_worker: StartWorker,
    room_tokens: dict[str, str], signaling_server: Any,
) -> None:
    weights = find_weights()
    models_dir = make_models_dir(tmp_path, weights, tmp_path / "gpu-real" / "cache")
    video = make_lecture(tmp_path, weights.photos)
    await start_worker("gpu-real", models={"models_dir": str(models_dir), "profiles": PROFILES})

    admin = SignalingClient(signaling_server.url, token=room_tokens["admin"], reconnect=False)
    await admin.connect()
    try:
        (info,) = await admin.list_workers()
    finally:
        await admin.close()
    held = {(m["pipeline"], m["name"]): m for m in info["models"]}
    assert set(held) == {("transcript", "tiny.en"), ("objects", "people"), ("ocr", "en")}
    assert held[("objects", "people")]["classes"] == ["Normal", "Fall"]
    assert all(len(m["sha256"]) == 64 for m in held.values())
    assert {"transcript", "objects", "ocr"} <= set(info["pipelines"])

    client = make_settings("laptop", role="client")
    store = await Store.open(client.database.url)
    try:
        pipelines = ["metadata", "scenes", "transcript", "objects", "ocr"]
        options = {"objects": {"model": "people", "sample_every_ms": 500, "track": True},
                   "ocr": {"sample_every_ms": 4000}}
        r = await submit_video(client, video, store=store, pipelines=pipelines, profile="fast",
                               options=options, link_options=fast_link())
        assert r.ok, r.error
        assert r.worker == "gpu-real"
        for name in pipelines:
            run = await store.get_run(f"{r.job_id}-{name}")
            assert run["status"] == "completed", (name, run)

        spoken = await find(store, r.asset_id, "window")
        assert spoken is not None and spoken.source == "transcript", spoken
        # "window" is in the second sentence (spoken from about 5.0 to 7.4 s; tiny.en may
        # join both sentences into one segment)
        assert spoken.start_ms <= 6000 <= spoken.end_ms, spoken
        shown = await find(store, r.asset_id, "summary")
        assert shown is not None and shown.source == "ocr", shown
        assert shown.start_ms == 4000

        # tracking keeps ids: the people standing still in the bus photo (6-8 s, sampled every
        # 500 ms; ByteTrack shows a new track from its second sighting) keep one id each
        dets = await store.artifacts(r.asset_id, artifact_type="object.detection")
        assert dets and all(d.payload["track_id"] is not None for d in dets)
        by_id: dict[int, list[Any]] = defaultdict(list)
        for d in dets:
            if 6000 <= d.payload["frame_pts_ms"] < 8000:
                by_id[d.payload["track_id"]].append(d.payload)
        kept = [sorted(ps, key=lambda p: p["frame_pts_ms"]) for ps in by_id.values()
                if len(ps) >= 2]
        assert len(kept) >= 2, {k: [p["frame_pts_ms"] for p in v] for k, v in by_id.items()}
        for ps in kept:
            assert len({p["frame_pts_ms"] for p in ps}) == len(ps)  # one box per id and sample
            for a, b in zip(ps, ps[1:], strict=False):
                assert _iou(a["box"], b["box"]) > 0.9

        # a model nobody holds: routing says which, and how to add it
        bad = await submit_video(client, video, store=store, pipelines=["objects"],
                                 profile="fast", options={"objects": {"model": "yolo-lab"}},
                                 link_options=fast_link())
        assert not bad.ok and bad.error is not None
        assert bad.error.code == "NO_MATCHING_WORKER"
        assert "holds model 'yolo-lab' for objects (held: people)" in bad.error.message
        assert "models add" in bad.error.message
    finally:
        await store.close()
