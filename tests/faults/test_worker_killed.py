"""A worker SIGKILLed mid-job: the job moves to another worker *with the matching backend*.

Three ``rtc-annotator worker`` processes: ``vast-a`` and ``vast-b`` mount the storage backend
``vast`` (under another path than the client), ``plain`` mounts nothing. The video lies on the
client's ``vast``, so routing prefers the two ``vast`` workers. The worker that got the job is
killed (SIGKILL to its process group, job child included) after the first stored batch.
Expected: the client is told (``rerouted``) within 15 s, the job goes to the *other* ``vast``
worker (not ``plain``), reads the video in place, completes, and the store holds every
artifact exactly once (the rerun reuses the job id, so run and artifact ids are the same).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import tomli_w

from rtc_annotator.client.submit import submit_video
from rtc_annotator.store import Store
from signaling.app import SignalingServer
from tests.e2e.conftest import wait_online

from .conftest import MakeSettings, Procs, fast_link

COLORS = ("red", "blue") * 8  # 16 hard cuts, one a second
log = logging.getLogger(__name__)
SLOW_SCENES = {"scenes": {"downscale_width": 0, "min_scene_len_ms": 200}}


def _worker_config(tmp: Path, url: str, token: str, name: str, storage: dict[str, str]) -> Path:
    cfg = tmp / f"{name}.toml"
    cfg.write_text(tomli_w.dumps({
        "signaling": {"url": url, "token": token, "heartbeat_s": 0.5, "reconnect_max_s": 1.0},
        "worker": {"name": name, "cache_dir": str(tmp / name / "cache"), "job_slots": 1,
                   "shutdown_grace_s": 2.0},
        "storage": {k: {"base_path": v, "type": "nfs"} for k, v in storage.items()},
        "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
    }))
    return cfg


async def test_sigkilled_worker_job_moves_to_a_worker_with_the_backend(
    tmp_path: Path, procs: Procs, make_video: Any, make_settings: MakeSettings,
    signaling_server: SignalingServer, room_tokens: dict[str, str],
) -> None:
    share = tmp_path / "share"
    (share / "alice").mkdir(parents=True)
    video = share / "alice" / "talk.mp4"
    src = make_video(colors=COLORS, seconds_each=1.0, size="1280x720")
    await asyncio.to_thread(shutil.copy, src, video)
    cluster_mount = tmp_path / "mnt-vast"
    os.symlink(share, cluster_mount)
    workers = {"vast-a": {"vast": str(cluster_mount)}, "vast-b": {"vast": str(cluster_mount)},
               "plain": {}}
    for name, storage in workers.items():
        cfg = _worker_config(tmp_path, signaling_server.url, room_tokens["worker"], name, storage)
        procs.spawn(name, ["-m", "rtc_annotator", "--log-level", "INFO", "worker", "--config",
                           str(cfg)])
    await wait_online(signaling_server.url, room_tokens["admin"], set(workers))

    settings = make_settings("laptop-k", role="client", storage={"vast": str(share)})
    store = await Store.open(settings.database.url)
    loop = asyncio.get_running_loop()
    seen: dict[str, Any] = {"routed": [], "killed_at": None, "told_at": None, "batches": 0}

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "routed":
            seen["routed"].append(data["worker"])
        elif kind == "artifacts":
            seen["batches"] += 1
            if seen["killed_at"] is None:
                procs.kill(seen["routed"][0])  # SIGKILL the group: the node is gone
                seen["killed_at"] = loop.time()
        elif kind == "rerouted":
            seen["told_at"] = loop.time()

    try:
        async with asyncio.timeout(90):
            result = await submit_video(settings, video, store=store,
                                        pipelines=["metadata", "scenes"], options=SLOW_SCENES,
                                        link_options=fast_link(), on_event=on_event)
        assert result.ok, result.error
        first, second = seen["routed"]
        assert first in ("vast-a", "vast-b")
        assert second == ({"vast-a", "vast-b"} - {first}).pop()  # matching backend, not plain
        assert result.worker == second and result.transfer == "shared"
        assert [(r["worker"], r["to"]) for r in result.reroutes] == [(first, second)]
        told_s = seen["told_at"] - seen["killed_at"]
        assert told_s < 15.0  # the bound
        scenes = await store.artifacts(result.asset_id, artifact_type="scene",
                                       run_id=f"{result.job_id}-scenes")
        meta = await store.artifacts(result.asset_id, artifact_type="video.metadata",
                                     run_id=f"{result.job_id}-metadata")
        assert [s.payload["index"] for s in scenes] == list(range(len(COLORS)))
        assert len({s.artifact_id for s in scenes}) == len(COLORS) and len(meta) == 1
        assert await store.count_artifacts(result.asset_id) == len(COLORS) + 1
        run = await store.get_run(f"{result.job_id}-scenes")
        assert (run["status"], run["worker"]) == ("completed", second)
        log.info("killed %s after batch 1, told in %.2f s, rerouted to %s; stored %d of %d, "
                 "batches handed to the store %d", first, told_s, second,
                 await store.count_artifacts(result.asset_id), len(COLORS) + 1, seen["batches"])
    finally:
        await store.close()
