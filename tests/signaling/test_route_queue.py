"""The admin's view of the route queue (``route_queue``) and the ``wait_for_workers`` policy
that lets requests wait for a worker a pool will start."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from rtc_annotator.protocol.signaling import Codes, SignalingError

from .conftest import MakeClient, caps


async def test_requests_wait_for_a_worker_only_with_wait_for_workers(
    make_client: MakeClient, room: Callable[..., Awaitable[dict[str, str]]],
) -> None:
    tokens = await room("lab")
    admin = await make_client(token=tokens["admin"])
    client = await make_client(token=tokens["client"], name="laptop")
    with pytest.raises(SignalingError) as err:
        await client.route(pipelines=["scenes"])
    assert err.value.code == Codes.NO_MATCHING_WORKER

    policy = (await admin.request("get_policy"))["policy"]
    assert policy["wait_for_workers"] is False
    await admin.request("set_policy", policy={**policy, "wait_for_workers": True})
    routed = asyncio.create_task(client.route(pipelines=["scenes"], required_storage="vast",
                                              strict=True))
    for _ in range(100):
        queue = (await admin.request("route_queue"))["queue"]
        if queue:
            break
        await asyncio.sleep(0.02)
    (row,) = queue
    assert row["client"] == "client:laptop" and row["position"] == 1 and row["waiting_s"] >= 0
    assert row["requirements"]["pipelines"] == ["scenes"]
    assert row["requirements"]["required_storage"] == "vast"
    assert row["requirements"]["strict"] is True
    # a reattach to a worker that is not online fails at once, whatever the policy
    with pytest.raises(SignalingError) as err:
        await client.request("route", timeout=5, pipelines=["scenes"], worker="rtc-gone-9")
    assert err.value.code == Codes.NO_MATCHING_WORKER
    (decision,) = [d for d in (await admin.request("decisions"))["decisions"]
                   if d["outcome"] == "queued"]
    assert "no worker is registered" in decision["reason"] and "wait_for_workers" in decision["reason"]

    # a worker that can take it registers: the request is routed, the queue is empty
    worker = await make_client(token=tokens["worker"])
    await worker.register_worker(caps("rtc-node-17", backends=("vast",)))
    reply = await asyncio.wait_for(routed, 10)
    assert reply["worker"] == "rtc-node-17"
    assert (await admin.request("route_queue"))["queue"] == []


async def test_route_queue_is_for_admins(
    make_client: MakeClient, room: Callable[..., Awaitable[dict[str, str]]],
) -> None:
    tokens = await room("lab")
    client = await make_client(token=tokens["client"])
    with pytest.raises(SignalingError) as err:
        await client.request("route_queue")
    assert err.value.code == Codes.FORBIDDEN
