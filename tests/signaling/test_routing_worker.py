"""Routing to one named worker (reattach) and away from excluded workers (reroute)."""

from __future__ import annotations

from typing import Any

import pytest

from rtc_annotator.protocol.signaling import Requirements, RoutingPolicy, SignalingError
from signaling.routing import Candidate, choose, why_never
from tests.signaling.conftest import caps

POLICY = RoutingPolicy()


def cand(name: str, *, free: int = 1, draining: bool = False,
         pipelines: tuple[str, ...] = ("scenes",)) -> Candidate:
    return Candidate(name, frozenset(pipelines), frozenset(), 0, free, 0, draining)


def req(**kw: Any) -> Requirements:
    kw.setdefault("pipelines", ["scenes"])
    return Requirements.model_validate(kw)


def test_named_worker_is_chosen_even_when_busy_or_draining() -> None:
    ws = [cand("a", free=3), cand("b", free=0, draining=True)]
    c = choose(ws, req(worker="b"), POLICY)
    assert c.worker == "b" and "requested worker" in c.reason
    assert why_never(ws, req(worker="b"), POLICY, "lab") is None
    assert choose(ws, req(), POLICY).worker == "a"


def test_named_worker_offline_is_a_clear_error() -> None:
    ws = [cand("a")]
    assert choose(ws, req(worker="gone"), POLICY).worker is None
    assert why_never(ws, req(worker="gone"), POLICY, "lab") == (
        "worker 'gone' is not online in room 'lab'")
    msg = why_never(ws, req(worker="a", pipelines=["ocr"]), POLICY, "lab")
    assert msg == "worker 'a' does not meet the other requirements"


def test_excluded_workers_are_never_chosen() -> None:
    ws = [cand("a", free=5), cand("b", free=1)]
    assert choose(ws, req(exclude=["a"]), POLICY).worker == "b"
    assert choose(ws, req(exclude=["a", "b"]), POLICY).worker is None
    assert why_never(ws, req(exclude=["a"]), POLICY, "lab") is None
    assert "other than a, b (excluded)" in str(why_never(ws, req(exclude=["a", "b"]), POLICY,
                                                         "lab"))
    # an excluded worker does not make another requirement look satisfiable
    ws2 = [cand("a", pipelines=("ocr",)), cand("b")]
    assert why_never(ws2, req(pipelines=["ocr"], exclude=["a"]), POLICY, "lab") is not None


async def test_route_to_named_busy_worker_over_the_server(room: Any, make_client: Any) -> None:
    t = await room("lab")
    w1 = await make_client(token=t["worker"])
    await w1.register_worker(caps("gpu-a", load=1))  # one slot, in use: plain routes queue
    w2 = await make_client(token=t["worker"])
    await w2.register_worker(caps("gpu-b"))
    client = await make_client(token=t["client"], name="laptop")
    routed = await client.request("route", pipelines=[], worker="gpu-a")
    assert routed["worker"] == "gpu-a"
    other = await client.request("route", pipelines=["scenes"], exclude=["gpu-a"])
    assert other["worker"] == "gpu-b"
    with pytest.raises(SignalingError) as err:
        await client.request("route", pipelines=["scenes"], exclude=["gpu-a", "gpu-b"])
    assert "excluded" in err.value.message
    with pytest.raises(SignalingError) as err:
        await client.request("route", pipelines=[], worker="gpu-zzz")
    assert err.value.code == "NO_MATCHING_WORKER"
    assert "gpu-zzz" in err.value.message and "not online" in err.value.message
