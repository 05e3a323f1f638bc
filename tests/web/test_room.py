"""The room dashboard in a real browser: nothing without a valid admin token; with one,
workers, route queue, decisions, policy, drain/undrain, tokens, live; the token never in a URL,
in browser storage or in serve's log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import pytest

from rtc_annotator.signaling_client import SignalingClient
from signaling.app import SignalingServer
from tests.e2e.conftest import (  # noqa: F401
    MakeSettings,
    StartWorker,
    make_settings,
    room_tokens,
    signaling_server,
    start_worker,
    wait_online,
)
from tests.web.conftest import ServeApp, screenshot


async def _open(page: Any, token: str) -> None:
    await page.fill("#room-token", token)
    await page.click("#room-login button[type=submit]")


async def _nothing_of_the_room(page: Any) -> None:
    assert await page.locator("#room-body").is_hidden()
    body = await page.inner_text("body")
    assert "gpu-1" not in body and "lab" not in body.split()


async def test_room_dashboard(
        fresh_browser: Any, serve_app_fn: ServeApp, make_settings: MakeSettings,  # noqa: F811
        start_worker: StartWorker, signaling_server: SignalingServer,  # noqa: F811
        room_tokens: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.DEBUG)
    await start_worker("gpu-1", job_slots=1)
    settings = make_settings("laptop", role="client")
    base = await serve_app_fn(settings)
    admin_token = room_tokens["admin"]
    page = await fresh_browser.new_page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    await page.goto(base + "/#/room")

    # no token, a client token, a wrong token: nothing of the room
    await page.locator("#room-login").wait_for()
    await _nothing_of_the_room(page)
    await _open(page, room_tokens["client"])
    await page.wait_for_function(
        "() => document.getElementById('room-error').textContent.includes('not an admin')")
    await _nothing_of_the_room(page)
    await _open(page, "not-a-token")
    await page.wait_for_function(
        "() => document.getElementById('room-error').textContent.includes('refused')")
    await _nothing_of_the_room(page)

    # a held slot and a waiting request: the queue shows it
    holder = SignalingClient(signaling_server.url, token=room_tokens["client"], reconnect=False)
    waiter = SignalingClient(signaling_server.url, token=room_tokens["client"], reconnect=False)
    await holder.connect()
    await waiter.connect()
    await holder.route(pipelines=["metadata"])
    waiting = asyncio.create_task(waiter.route(pipelines=["metadata"]))
    try:
        await _open(page, admin_token)
        row = page.locator("#worker-table tr[data-worker='gpu-1']")
        await row.wait_for()
        text = await row.inner_text()
        assert "metadata" in text and "0/1" in text and "online" in text
        assert await page.inner_text("#room-name") == "lab"
        await page.locator("#queue-table tbody tr").first.wait_for()
        assert "metadata" in await page.inner_text("#queue-table tbody tr")
        decisions = await page.inner_text("#decision-table tbody")
        assert "routed" in decisions and "queued" in decisions
        await screenshot(page, "webapp-room.png")
    finally:
        waiting.cancel()
        with contextlib.suppress(BaseException):
            await waiting
        await waiter.close()
        await holder.close()

    admin = SignalingClient(signaling_server.url, token=admin_token, reconnect=False)
    await admin.connect()
    try:
        # drain / undrain, seen by the signaling server and, live, on the page
        await page.click("#worker-table tr[data-worker='gpu-1'] button.drain")
        await page.locator("#worker-table tr[data-worker='gpu-1'] td.state",
                           has_text="draining").wait_for()
        assert [w["draining"] for w in await admin.list_workers()] == [True]
        await page.click("#worker-table tr[data-worker='gpu-1'] button.drain")
        await page.locator("#worker-table tr[data-worker='gpu-1'] td.state",
                           has_text="online").wait_for()
        assert [w["draining"] for w in await admin.list_workers()] == [False]

        # policy
        await page.select_option("#policy-storage", "strict")
        await page.fill("#policy-max-queue", "7")
        await page.click("#policy-form button")
        await page.wait_for_function(
            "() => document.getElementById('policy-status').textContent.includes('strict')")
        policy = (await admin.request("get_policy"))["policy"]
        assert policy["storage"] == "strict" and policy["max_queue"] == 7

        # issue a token, use it, revoke it
        await page.select_option("#token-role", "client")
        await page.fill("#token-label", "from the dashboard")
        await page.click("#token-form button")
        await page.wait_for_function(
            "() => document.getElementById('token-issued').textContent.includes('token, id')")
        issued = await page.inner_text("#token-issued")
        token_id = re.search(r"id (\S+),", issued).group(1)  # type: ignore[union-attr]
        new_token = issued.strip().splitlines()[-1]
        probe = SignalingClient(signaling_server.url, token=new_token, reconnect=False)
        assert (await probe.connect())["role"] == "client"
        await probe.close()
        await page.fill("#revoke-id", token_id)
        await page.click("#revoke-form button")
        await page.wait_for_function(
            "() => document.getElementById('revoke-status').textContent.includes('revoked')")
        refused = SignalingClient(signaling_server.url, token=new_token, reconnect=False)
        with pytest.raises(Exception, match="revoked|TOKEN_REVOKED"):
            await refused.connect()
        await refused.close()
    finally:
        await admin.close()

    # the admin token never went into a URL, browser storage or serve's log
    assert not [u for u in urls if admin_token in u]
    stored = await page.evaluate("() => JSON.stringify([localStorage, sessionStorage])")
    assert admin_token not in stored and admin_token not in page.url
    assert admin_token not in caplog.text
    # forgetting it hides the room again
    await page.click("#room-forget")
    await _nothing_of_the_room(page)
