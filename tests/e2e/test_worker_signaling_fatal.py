"""A worker whose signaling client stops for good (replaced, token revoked) stops too, and
its ``run()`` raises the reason instead of leaving an idle process nobody can reach."""

from __future__ import annotations

import asyncio

import pytest

from rtc_annotator.protocol.signaling import Codes, SignalingError
from signaling.app import SignalingServer
from tests.e2e.conftest import StartWorker, _agent_tasks, wait_online


async def test_replaced_worker_stops_and_says_why(
    start_worker: StartWorker, signaling_server: SignalingServer,
    room_tokens: dict[str, str]
) -> None:
    first = await start_worker("gpu-a")
    first_task = _agent_tasks[id(first)]
    second = await start_worker("gpu-a")  # same name, same token: takes over
    with pytest.raises(SignalingError) as info:
        await asyncio.wait_for(asyncio.shield(first_task), 20)
    assert info.value.code == Codes.REPLACED
    # the newcomer serves on
    assert not _agent_tasks[id(second)].done()
    await wait_online(signaling_server.url, room_tokens["admin"], {"gpu-a"})
