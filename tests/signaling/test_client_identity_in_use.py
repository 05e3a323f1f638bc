"""SignalingClient stops at once when the server refuses its identity (IDENTITY_IN_USE).

A name held by a connection with another token cannot be had by retrying with the same name
and token (docs/security.md, "Identities"): ``connect()`` raises the server's refusal (code,
message naming the identity, hint) instead of retrying with backoff and then reporting
CONNECTION_LOST, and a client that loses its name during an outage stops reconnecting and
reports it to whatever awaits it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.protocol.signaling import Codes, SignalingError
from rtc_annotator.signaling_client import SignalingClient
from signaling.app import SignalingServer
from tests.signaling.conftest import caps
from tests.signaling.test_flow import _until
from tests.signaling.test_identity_binding import second_token

BACKOFF_S = 1.0
"""The refused clients' first reconnect delay is in [BACKOFF_S / 2, BACKOFF_S]: a refusal
must be reported well before the first retry would even start."""

REFUSAL_LOG = "identity in use by another token, refused"


def refusals(caplog: pytest.LogCaptureFixture) -> int:
    """How many times the server refused an identity (once per hello or register)."""
    return sum(REFUSAL_LOG in r.getMessage() for r in caplog.records)


def new_client(server: SignalingServer, token: str, **kw: Any) -> SignalingClient:
    kw.setdefault("heartbeat_s", 0.2)
    kw.setdefault("reconnect_min_s", BACKOFF_S)
    kw.setdefault("reconnect_max_s", BACKOFF_S)
    kw.setdefault("request_timeout_s", 5.0)
    kw.setdefault("connect_timeout_s", 5.0)
    return SignalingClient(server.url, token=token, **kw)


def assert_identity_in_use(exc: BaseException, identity: str) -> None:
    assert isinstance(exc, SignalingError) and isinstance(exc, RtcAnnotatorError)
    assert exc.code == Codes.IDENTITY_IN_USE
    assert identity in exc.message and "another token" in exc.message
    assert "revoke" in exc.hint and "wait" in exc.hint
    # the CLI prints ``error: CODE: message -- hint`` on one line
    assert identity in exc.one_line() and exc.hint in exc.one_line()
    assert "cannot reach" not in exc.one_line()


@pytest.mark.parametrize("reconnect", [False, True])
async def test_connect_with_a_name_held_by_another_token_fails_at_once(
        server: SignalingServer, room: Any, make_client: Any, reconnect: bool,
        caplog: pytest.LogCaptureFixture) -> None:
    t = await room("lab")
    other = await second_token(server, t["admin"], "client")
    holder = await make_client(token=t["client"], name="laptop")
    late = new_client(server, other, name="laptop", reconnect=reconnect)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.INFO, logger="signaling.hub"):
        with pytest.raises(SignalingError) as err:
            await late.connect()
        took = loop.time() - started
        assert_identity_in_use(err.value, "client:laptop")
        assert "another name" in err.value.hint
        assert took < BACKOFF_S / 2, f"refusal reported after {took:.2f} s"
        # it gave up: no retry follows, later calls raise the same refusal
        await asyncio.sleep(BACKOFF_S * 1.5)
        assert refusals(caplog) == 1
        assert late.connections == 0 and not late.connected
        with pytest.raises(SignalingError) as again:
            await late.connect()
        assert again.value.code == Codes.IDENTITY_IN_USE
        with pytest.raises(SignalingError) as req:
            await late.request("list_workers")
        assert req.value.code == Codes.IDENTITY_IN_USE
    await late.close()
    # the holder is undisturbed: still connected, still bound to its token
    assert holder.connected and holder.connections == 1
    assert holder.identity == "client:laptop"
    assert server.hub.owners[("lab", "client:laptop")] == t["client_id"]
    assert (await holder.request("list_workers"))["workers"] == []


async def test_worker_name_held_by_another_token_refused_at_first_registration(
        server: SignalingServer, room: Any, make_client: Any) -> None:
    t = await room("lab")
    other = await second_token(server, t["admin"], "worker")
    holder = await make_client(token=t["worker"], name="gpu-a")
    await holder.register_worker(caps("gpu-a"))
    late = new_client(server, other, name="gpu-a")
    try:
        await late.connect()  # a worker's identity comes with register, not with hello
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(SignalingError) as err:
            await late.register_worker(caps("gpu-a", slots=4))
        assert loop.time() - started < BACKOFF_S / 2
        assert_identity_in_use(err.value, "worker:gpu-a")
        assert "another worker name" in err.value.hint
        assert late.capabilities is None  # never re-registered after a reconnect
    finally:
        await late.close()
    assert holder.connected
    assert server.hub.owners[("lab", "worker:gpu-a")] == t["worker_id"]
    listed = await holder.list_workers()
    assert [(w["name"], w["job_slots"]) for w in listed] == [("gpu-a", 1)]


@pytest.mark.parametrize("role", ["client", "worker"])
async def test_name_taken_during_an_outage_stops_reconnecting_and_is_reported(
        server: SignalingServer, room: Any, make_client: Any, role: str,
        caplog: pytest.LogCaptureFixture) -> None:
    t = await room("lab")
    other = await second_token(server, t["admin"], role)
    identity = f"{role}:laptop"
    first = new_client(server, t[role], name="laptop")
    try:
        await first.connect()
        if role == "worker":
            await first.register_worker(caps("laptop"))
        if role == "client":
            assert first.identity == identity
        # the link is lost; with no sessions the name is free at once, and another token
        # takes it before ``first`` comes back (its reconnect waits BACKOFF_S / 2 at least)
        await first.drop_connection()
        await _until(lambda: ("lab", identity) not in server.hub.by_identity)
        thief = await make_client(token=other, name="laptop")
        if role == "worker":
            await thief.register_worker(caps("laptop"))
        assert server.hub.owners[("lab", identity)] != t[f"{role}_id"]

        with caplog.at_level(logging.INFO, logger="signaling.hub"):
            # whatever awaits the client gets the refusal, not CONNECTION_LOST after a timeout
            with pytest.raises(SignalingError) as err:
                await first.request("list_workers", timeout=5.0)
            assert_identity_in_use(err.value, identity)
            event = await first.next_event("error", timeout=1.0)
            assert event["code"] == Codes.IDENTITY_IN_USE and identity in event["message"]
            with pytest.raises(SignalingError) as ended:  # then the event stream ends
                await first.next_event(timeout=1.0)
            assert ended.value.code == Codes.CONNECTION_LOST
            # and it stopped: no further attempt reaches the server
            await asyncio.sleep(BACKOFF_S * 1.5)
            assert refusals(caplog) == 1
        assert not first.connected and first.connections == 1
        with pytest.raises(SignalingError) as again:
            await first.connect()
        assert again.value.code == Codes.IDENTITY_IN_USE
        # the new holder keeps the name
        assert thief.connected and server.hub.by_identity.get(("lab", identity)) is not None
        assert server.hub.owners[("lab", identity)] != t[f"{role}_id"]
    finally:
        await first.close()
