"""The whole path: real signaling server, real signaling clients, real aiortc peers, a job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.transport.peer import CallbackSignaler, LinkOptions, PeerLink
from signaling.app import SignalingServer
from signaling.turn import IceConfig
from tests.signaling.conftest import ADMIN_SECRET, caps, server_config
from tests.transport.conftest import LOCAL_ICE, Env, RecordingSink, ToyExecutor, make_file


@pytest.fixture
async def signaling(tmp_path: Path) -> AsyncIterator[SignalingServer]:
    srv = SignalingServer(server_config(tmp_path / "state.sqlite3", ice=IceConfig()))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def _client(url: str, **kw: object) -> SignalingClient:
    c = SignalingClient(url, heartbeat_s=0.2, reconnect_min_s=0.05, reconnect_max_s=0.2,
                        request_timeout_s=5.0, connect_timeout_s=5.0, **kw)  # type: ignore[arg-type]
    await c.connect()
    return c


async def test_job_over_a_session_routed_by_the_signaling_server(
    signaling: SignalingServer, env: Env, tmp_path: Path
) -> None:
    root = await _client(signaling.url, admin_secret=ADMIN_SECRET, reconnect=False)
    created = await root.request("create_room", name="lab")
    admin = await _client(signaling.url, token=created["token"])
    tokens = {role: (await admin.request("issue_token", role=role, ttl_s=600))["token"]
              for role in ("worker", "client")}
    worker_sig = await _client(signaling.url, token=tokens["worker"])
    client_sig = await _client(signaling.url, token=tokens["client"], name="laptop")
    try:
        await worker_sig.register_worker(caps("gpu-a", backends=("vast",)))
        routed = await client_sig.route(pipelines=["scenes"], required_storage="vast")
        sid = routed["session_id"]
        started = await worker_sig.next_event("session_started", timeout=5)
        assert started["session_id"] == sid

        laptop, cluster = tmp_path / "laptop", tmp_path / "cluster"
        video = make_file(laptop / "alice" / "a.mp4", 100_000)
        make_file(cluster / "alice" / "a.mp4", 100_000)
        execu = ToyExecutor(batches=2)
        server = env.server(execu, storage=env.storage(cluster))
        opts = LinkOptions(ice=LOCAL_ICE, extra_ice_servers=routed["ice_servers"],
                           connect_timeout_s=15)
        client_link, worker_link = await asyncio.gather(
            PeerLink.connect(CallbackSignaler.for_session(client_sig, sid), offer=True,
                             role="client", options=opts),
            PeerLink.connect(CallbackSignaler.for_session(worker_sig, sid), offer=False,
                             role="worker", options=opts),
        )
        env.links += [client_link, worker_link]
        env.tasks.append(asyncio.create_task(server.serve(worker_link)))
        sink = RecordingSink()

        result = await env.client(client_link, sink, storage=env.storage(laptop)).submit(
            video, pipelines={"scenes": {}})

        assert result.ok and result.transfer == "shared" and result.sent_bytes == 0
        assert len(sink.ids()) == 4
    finally:
        for c in (client_sig, worker_sig, admin, root):
            await c.close()
