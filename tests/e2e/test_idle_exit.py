"""``[worker] idle_exit_s``: a worker with no session and no job for that long leaves the room
and returns (exit 0); a job keeps it, and the clock starts again when the job ends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from rtc_annotator.client.submit import submit_video
from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.store import Store
from rtc_annotator.worker.agent import WorkerAgent
from signaling.app import SignalingServer

from .conftest import MakeSettings, fast_link, wait_online


async def test_idle_worker_exits_and_a_job_keeps_it(
    make_settings: MakeSettings, make_video: Callable[..., Path],
    signaling_server: SignalingServer, room_tokens: dict[str, str],
) -> None:
    settings = make_settings("idler", role="worker")
    settings.worker.idle_exit_s = 2.0
    sig = SignalingClient.from_settings(settings.signaling, name="idler", reconnect_min_s=0.05)
    agent = WorkerAgent(settings, signaling=sig, link_options=fast_link())
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(agent.run())
    try:
        await wait_online(signaling_server.url, room_tokens["admin"], {"idler"})
        client = make_settings("laptop-idle", role="client")
        store = await Store.open(client.database.url)
        try:
            result = await submit_video(client, make_video(), store=store,
                                        pipelines=["metadata"], link_options=fast_link())
        finally:
            await store.close()
        assert result.ok, result.error
        job_done = loop.time()
        assert not task.done()  # busy until just now: the idle clock started again
        await asyncio.wait_for(asyncio.shield(task), 20)  # returns: exit 0
        assert agent.idle_exited
        assert loop.time() - job_done >= 1.5
        await wait_online(signaling_server.url, room_tokens["admin"], {"idler"}, present=False)
    finally:
        agent.stop()
        await asyncio.gather(task, return_exceptions=True)


async def test_no_idle_exit_by_default(
    make_settings: MakeSettings, signaling_server: SignalingServer, room_tokens: dict[str, str],
) -> None:
    settings = make_settings("stayer", role="worker")
    assert settings.worker.idle_exit_s == 0
    agent = WorkerAgent(settings, link_options=fast_link())
    task = asyncio.create_task(agent.run())
    try:
        await wait_online(signaling_server.url, room_tokens["admin"], {"stayer"})
        await asyncio.sleep(1.0)
        assert not task.done() and not agent.idle_exited
    finally:
        agent.stop()
        await asyncio.wait_for(task, 20)
