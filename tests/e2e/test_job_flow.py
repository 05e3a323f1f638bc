"""One job end to end: signaling routing, aiortc peers, shared path vs data-channel fallback,
pipelines in a child process, envelopes into the store."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rtc_annotator.client.submit import submit_video
from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.store import Store

from .conftest import MakeSettings, StartWorker, fast_link


async def _scenes(store: Store, asset_id: str, run_id: str) -> list[tuple[int, int, int]]:
    rows = await store.artifacts(asset_id, artifact_type="scene", run_id=run_id)
    return sorted((r.payload["index"], r.payload["start_ms"], r.payload["end_ms"])
                  for r in rows)


async def test_shared_path_and_rtc_fallback(
    tmp_path: Path, make_video, make_settings: MakeSettings, start_worker: StartWorker
) -> None:
    shared = tmp_path / "share"
    (shared / "alice" / "clips").mkdir(parents=True)
    video = shared / "alice" / "clips" / "lecture.mp4"
    shutil.copy(make_video(colors=("red", "blue", "green"), seconds_each=1.0), video)
    # The worker mounts the same share under another path (laptop /Volumes vs cluster /mnt).
    cluster_mount = tmp_path / "mnt-share"
    os.symlink(shared, cluster_mount)

    client_settings = make_settings("laptop", role="client", storage={"vast": str(shared)})
    store = await Store.open(client_settings.database.url)
    try:
        # 1. Only a worker WITHOUT the backend: BACKEND_NOT_AVAILABLE -> file sent over WebRTC.
        await start_worker("gpu-b")
        events: list[str] = []
        r1 = await submit_video(client_settings, video, store=store,
                                pipelines=["metadata", "scenes"], link_options=fast_link(),
                                on_event=lambda kind, data: events.append(kind))
        assert r1.ok, r1.error
        assert r1.worker == "gpu-b"
        assert r1.transfer == "rtc"
        assert r1.sent_bytes == video.stat().st_size
        assert "does not mount vast" in r1.decision
        assert {"routing", "routed", "connected", "artifacts"} <= set(events)

        # 2. Same file again: the worker already holds that sha256, nothing is sent.
        r2 = await submit_video(client_settings, video, store=store, pipelines=["scenes"],
                                link_options=fast_link())
        assert r2.ok, r2.error
        assert (r2.worker, r2.transfer, r2.sent_bytes) == ("gpu-b", "cached", 0)

        # 3. A worker that mounts the backend joins: routing prefers it, it reads in place.
        await start_worker("gpu-a", storage={"vast": str(cluster_mount)})
        r3 = await submit_video(client_settings, video, store=store, pipelines=["scenes"],
                                link_options=fast_link())
        assert r3.ok, r3.error
        assert r3.worker == "gpu-a"
        assert "mounts vast" in r3.decision
        assert (r3.transfer, r3.sent_bytes) == ("shared", 0)

        # Same results whichever way the video travelled; hard cuts at 1 s and 2 s.
        assert r1.asset_id == r2.asset_id == r3.asset_id
        expected = [(0, 0, 1000), (1, 1000, 2000), (2, 2000, 3000)]
        for r in (r1, r2, r3):
            assert await _scenes(store, r.asset_id, f"{r.job_id}-scenes") == expected
            run = await store.get_run(f"{r.job_id}-scenes")
            assert run["status"] == "completed"
            assert run["worker"] == r.worker
        meta = await store.artifacts(r1.asset_id, artifact_type="video.metadata")
        assert len(meta) == 1 and meta[0].payload["duration_ms"] in range(2960, 3041)
        assert r1.pipelines["scenes"]["artifacts"] == 3
    finally:
        await store.close()


async def test_no_worker_with_pipeline_is_a_clear_error(
    make_settings: MakeSettings, start_worker: StartWorker, make_video
) -> None:
    await start_worker("gpu-c")
    settings = make_settings("laptop2", role="client")
    store = await Store.open(settings.database.url)
    try:
        sig = SignalingClient.from_settings(settings.signaling)
        await sig.connect()
        try:
            result = await submit_video(settings, make_video(), store=store,
                                        pipelines=["transcript"], signaling=sig,
                                        link_options=fast_link())
        finally:
            await sig.close()
        assert not result.ok
        assert result.error is not None
        assert "transcript" in result.error.message
    finally:
        await store.close()
