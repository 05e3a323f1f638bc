"""PeerLink over real aiortc on 127.0.0.1: ICE restriction, handshake, heartbeats, backpressure."""

from __future__ import annotations

import asyncio

import pytest

from rtc_annotator.config import IceSettings
from rtc_annotator.errors import ConfigError
from rtc_annotator.protocol import peer as proto
from rtc_annotator.transport.ice import check_host_addresses, rtc_configuration
from rtc_annotator.transport.peer import LinkClosed
from tests.transport.conftest import Env


def test_rtc_configuration_never_falls_back_to_public_stun() -> None:
    assert rtc_configuration(IceSettings()).iceServers == []
    cfg = rtc_configuration(IceSettings(), [{"urls": "turn:10.0.0.1:3478", "username": "u",
                                              "credential": "p"}])
    assert cfg.iceServers is not None and cfg.iceServers[0].urls == ["turn:10.0.0.1:3478"]
    with pytest.raises(ConfigError):
        check_host_addresses(["localhost"])


async def test_only_configured_host_addresses_are_offered(env: Env) -> None:
    client, worker = await env.connect()
    for link in (client, worker):
        assert link.pc.sctp is not None
        gatherer = link.pc.sctp.transport.transport.iceGatherer
        candidates = gatherer.getLocalCandidates()
        assert candidates and {c.ip for c in candidates} == {"127.0.0.1"}
        assert link.pc.connectionState == "connected"
    assert client.version == worker.version == proto.PROTOCOL_VERSION
    assert client.peer_hello is not None and client.peer_hello.role == "worker"
    assert worker.peer_hello is not None and worker.peer_hello.name == "laptop"


async def test_garbage_on_control_is_answered_and_link_survives(env: Env) -> None:
    client, worker = await env.connect()
    client.control.send(b"\xc1garbage")
    client.control.send("text frame")
    await client.send(proto.Cancel(job_id="still-works"))
    msg = await asyncio.wait_for(worker.recv(), 5)
    assert msg == proto.Cancel(job_id="still-works")
    assert not worker.closed.is_set()


async def test_silent_peer_is_declared_gone_by_heartbeats(env: Env) -> None:
    client, worker = await env.connect(dead_after_s=1.0, heartbeat_s=0.2)
    # The worker process hangs: it stops answering and sending, the SCTP association stays up.
    worker.control.remove_all_listeners("message")
    for task in worker._tasks:
        task.cancel()
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    await asyncio.wait_for(client.closed.wait(), 5)

    assert "silent" in client.close_reason
    assert loop.time() - t0 < 3.0
    with pytest.raises(LinkClosed):
        await client.recv()
    with pytest.raises(LinkClosed):
        await client.send(proto.Ping(nonce=1))


async def test_bulk_backpressure_bounds_the_buffer(env: Env) -> None:
    client, worker = await env.connect(bulk_high_water=256 * 1024, bulk_low_threshold=64 * 1024)
    got = bytearray()
    done = asyncio.Event()
    total = 4 * 1024 * 1024

    def on_bulk(frame: bytes) -> None:
        got.extend(frame[:1])
        if worker.bulk_received_bytes >= total:
            done.set()

    worker.set_bulk_handler(on_bulk)
    peak = 0
    chunk = b"z" * 65536
    for _ in range(total // len(chunk)):
        await client.send_bulk(chunk)
        peak = max(peak, client.bulk.bufferedAmount)
    await asyncio.wait_for(done.wait(), 10)
    assert worker.bulk_received_bytes == total
    assert peak <= 256 * 1024 + len(chunk)
