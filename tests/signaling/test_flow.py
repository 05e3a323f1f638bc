"""Registration, discovery, routing, queueing and relay against the real server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from typing import Any

import pytest

from rtc_annotator.protocol.signaling import SignalingError
from tests.signaling.conftest import caps


async def test_register_and_list_with_filters(room: Any, make_client: Any) -> None:
    t = await room("lab")
    w1 = await make_client(token=t["worker"])
    w2 = await make_client(token=t["worker"])
    reply = await w1.register_worker(caps("gpu-a", backends=("vast",), gpu_mb=80000,
                                          pipelines=("scenes", "transcript")))
    assert reply["worker"]["name"] == "gpu-a" and reply["worker"]["free_slots"] == 1
    await w2.register_worker(caps("gpu-b", backends=("nfs",), gpu_mb=16000))
    client = await make_client(token=t["client"])
    names = [w["name"] for w in await client.list_workers()]
    assert names == ["gpu-a", "gpu-b"]
    assert [w["name"] for w in await client.list_workers(backend="vast")] == ["gpu-a"]
    assert [w["name"] for w in await client.list_workers(pipeline="transcript")] == ["gpu-a"]
    assert [w["name"] for w in await client.list_workers(min_gpu_memory_mb=20000)] == ["gpu-a"]
    assert await client.list_workers(backend="lustre") == []
    listed = (await client.list_workers(backend="nfs"))[0]
    assert listed["storage_backends"] == [{"name": "nfs", "type": "nfs"}]
    assert "base_path" not in str(listed)


async def test_route_pairs_and_relays_signals(room: Any, make_client: Any) -> None:
    t = await room("lab")
    worker = await make_client(token=t["worker"])
    await worker.register_worker(caps("gpu-a", backends=("vast",)))
    client = await make_client(token=t["client"], name="laptop")
    routed = await client.route(pipelines=["scenes"], required_storage="vast")
    sid = routed["session_id"]
    assert routed["worker"] == "gpu-a" and routed["worker_info"]["job_slots"] == 1
    assert routed["decision"]["storage_match"] is True
    turn = routed["ice_servers"][0]
    user = turn["username"]
    expected = base64.b64encode(hmac.new(b"turn-secret", user.encode(), hashlib.sha1).digest())
    assert turn["credential"] == expected.decode() and user.endswith(":client:laptop")
    started = await worker.next_event("session_started", timeout=5)
    assert started["session_id"] == sid and started["client"] == "client:laptop"
    await client.send_signal(sid, {"kind": "offer", "sdp": "v=0 offer"})
    got = await worker.next_signal(sid, timeout=5)
    assert got == {"kind": "offer", "sdp": "v=0 offer"}
    await worker.send_signal(sid, {"kind": "answer", "sdp": "v=0 answer"})
    assert (await client.next_signal(sid, timeout=5))["sdp"] == "v=0 answer"
    await worker.send_signal(sid, {"kind": "candidate", "candidate": "c1", "sdpMid": "0"})
    assert (await client.next_signal(sid, timeout=5))["candidate"] == "c1"


async def test_routing_prefers_storage_then_strict(room: Any, make_client: Any) -> None:
    t = await room("lab")
    big = await make_client(token=t["worker"])
    await big.register_worker(caps("big-nfs", backends=("nfs",), gpu_mb=80000, slots=4))
    small = await make_client(token=t["worker"])
    await small.register_worker(caps("small-vast", backends=("vast",), gpu_mb=8000))
    client = await make_client(token=t["client"])
    # preferred: the vast worker wins over more slots and more GPU memory
    r1 = await client.route(pipelines=["scenes"], required_storage="vast")
    assert r1["worker"] == "small-vast"
    # preferred, vast worker busy: falls back to the other one
    r2 = await client.route(pipelines=["scenes"], required_storage="vast")
    assert r2["worker"] == "big-nfs" and r2["decision"]["storage_match"] is False
    # strict: no worker mounts lustre -> a clear error, no queueing
    with pytest.raises(SignalingError) as err:
        await client.route(pipelines=["scenes"], required_storage="lustre", strict=True)
    assert err.value.code == "NO_MATCHING_WORKER" and "lustre" in err.value.message
    # strict, the vast worker busy: queued rather than sent to big-nfs
    positions: list[int] = []
    task = asyncio.create_task(client.route(pipelines=["scenes"], required_storage="vast",
                                            strict=True, on_queue=lambda f: positions.append(
                                                f["position"])))
    await _until(lambda: positions == [1])
    await client.end_session(r1["session_id"])
    r3 = await asyncio.wait_for(task, 5)
    assert r3["worker"] == "small-vast"


async def test_no_match_errors_name_the_requirement(room: Any, make_client: Any) -> None:
    t = await room("lab")
    client = await make_client(token=t["client"])
    with pytest.raises(SignalingError, match="no worker is registered"):
        await client.route(pipelines=["scenes"])
    w = await make_client(token=t["worker"])
    await w.register_worker(caps("gpu-a", gpu_mb=16000))
    with pytest.raises(SignalingError, match="pipeline.*ocr"):
        await client.route(pipelines=["ocr"])
    with pytest.raises(SignalingError, match="GPU memory"):
        await client.route(pipelines=["scenes"], min_gpu_memory_mb=40000)


async def test_queue_positions_and_slot_release(room: Any, make_client: Any) -> None:
    t = await room("lab")
    worker = await make_client(token=t["worker"])
    await worker.register_worker(caps("gpu-a"))
    c1 = await make_client(token=t["client"])
    c2 = await make_client(token=t["client"])
    c3 = await make_client(token=t["client"])
    first = await c1.route(pipelines=["scenes"])
    pos2: list[int] = []
    pos3: list[int] = []
    t2 = asyncio.create_task(c2.route(pipelines=["scenes"],
                                      on_queue=lambda f: pos2.append(f["position"])))
    await _until(lambda: pos2 == [1])
    t3 = asyncio.create_task(c3.route(pipelines=["scenes"],
                                      on_queue=lambda f: pos3.append(f["position"])))
    await _until(lambda: pos3 == [2])
    assert (await c1.list_workers())[0]["free_slots"] == 0
    await worker.end_session(first["session_id"])  # the worker ends it: slot released
    second = await asyncio.wait_for(t2, 5)
    await _until(lambda: pos3 == [2, 1])
    ended = await c1.next_signal(first["session_id"], timeout=5)
    assert ended["kind"] == "bye" and ended["ended"] is True
    await c2.end_session(second["session_id"])
    third = await asyncio.wait_for(t3, 5)
    assert third["worker"] == "gpu-a"
    # load reported by the worker counts against its slots too
    await c3.end_session(third["session_id"])
    await worker.update_load(1)
    assert (await c1.list_workers())[0]["free_slots"] == 0


async def _until(cond: Any, within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_queue_is_first_come_first_served_without_head_of_line_blocking(
        room: Any, make_client: Any) -> None:
    t = await room("lab")
    vast = await make_client(token=t["worker"])
    await vast.register_worker(caps("w-vast", backends=("vast",)))
    nfs = await make_client(token=t["worker"])
    await nfs.register_worker(caps("w-nfs", backends=("nfs",)))
    c = await make_client(token=t["client"])
    held = await c.route(pipelines=["scenes"], required_storage="vast", strict=True)
    positions: list[int] = []
    waiting = asyncio.create_task(c.route(pipelines=["scenes"], required_storage="vast",
                                          strict=True,
                                          on_queue=lambda f: positions.append(f["position"])))
    await _until(lambda: positions == [1])
    # the free nfs worker is of no use to the waiting strict-vast request: served at once
    other = await c.route(pipelines=["scenes"], required_storage="nfs")
    assert other["worker"] == "w-nfs"
    await c.end_session(other["session_id"])
    await c.end_session(held["session_id"])  # the vast slot frees: the waiting request gets it
    assert (await asyncio.wait_for(waiting, 5))["worker"] == "w-vast"
