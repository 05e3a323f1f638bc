"""The signaling server SIGKILLed mid-job and restarted on the same port and state file.

Processes: ``python -m signaling`` and ``rtc-annotator worker`` are separate processes; the
client (``submit_video``) runs in the test. The server is killed as soon as the client's peer
link is up, and restarted 0.5 s later; the client holds its first batch until the restart
happened, so the job provably spans the whole outage. Expected:

* the peer-to-peer job completes with every artifact (it no longer needs the server);
* the worker re-registers and the client reconnects within 10 s of the restart (measured);
* the room survives: same admin/worker/client tokens valid, the routing policy as set, a token
  revoked before the crash still revoked; a second job routes through the restarted server.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from rtc_annotator.client.submit import submit_video
from rtc_annotator.config import Settings
from rtc_annotator.protocol.signaling import SignalingError
from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.store import Store

from .conftest import Procs, SignalingProcess, fast_link, make_room, store_contents

log = logging.getLogger(__name__)
POLICY = {"storage": "preferred", "strict_backends": ["vast"], "max_queue": 7,
          "recent_window_s": 123.0}


async def _until(pred: Any, timeout: float, what: str) -> float:  # noqa: ASYNC109
    """Poll the async predicate until true; return the loop time it became true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            if await pred():
                return loop.time()
        except SignalingError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout} s")


async def _listed(url: str, admin_token: str, name: str) -> bool:
    admin = SignalingClient(url, token=admin_token, reconnect=False, connect_timeout_s=2)
    try:
        await admin.connect()
        return any(w["name"] == name for w in await admin.list_workers())
    finally:
        await admin.close()


async def test_signaling_killed_and_restarted_mid_job(
    tmp_path: Path, procs: Procs, noisy_video: Path
) -> None:
    server = SignalingProcess(procs, tmp_path / "signaling-state.sqlite3")
    await server.start()
    tokens = await make_room(server.url)
    admin = SignalingClient(server.url, token=tokens["admin"], reconnect=False)
    await admin.connect()
    await admin.request("set_policy", policy=POLICY)
    spare = await admin.request("issue_token", role="client", ttl_s=600)
    await admin.request("revoke_token", token_id=spare["token_id"])
    await admin.close()

    wcfg = tmp_path / "w-proc.toml"
    wcfg.write_text(tomli_w.dumps({
        "signaling": {"url": server.url, "token": tokens["worker"], "heartbeat_s": 0.5,
                      "reconnect_max_s": 1.0},
        "worker": {"name": "w-proc", "cache_dir": str(tmp_path / "w-proc"), "job_slots": 1},
        "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
    }))
    procs.spawn("w-proc", ["-m", "rtc_annotator", "--log-level", "INFO", "worker", "--config",
                           str(wcfg)])
    await _until(lambda: _listed(server.url, tokens["admin"], "w-proc"), 30, "worker listed")

    settings = Settings.model_validate({
        "signaling": {"url": server.url, "token": tokens["client"], "heartbeat_s": 0.5,
                      "reconnect_max_s": 1.0},
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}"},
        "ice": {"servers": [], "host_addresses": ["127.0.0.1"]},
    })
    sig = SignalingClient.from_settings(settings.signaling, name="laptop")
    await sig.connect()
    store = await Store.open(settings.database.url)
    loop = asyncio.get_running_loop()
    times: dict[str, float] = {}
    tasks: dict[str, asyncio.Task[Any]] = {}

    async def restart_after_outage() -> None:
        await asyncio.sleep(0.5)
        times["up"] = await server.start()

        async def client_back() -> bool:
            return sig.connections >= 2 and sig.connected

        times["worker_back"], times["client_back"] = await asyncio.gather(
            _until(lambda: _listed(server.url, tokens["admin"], "w-proc"), 15,
                   "worker re-registered"),
            _until(client_back, 15, "client reconnected"))

    async def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "connected" and "kill" not in times:
            await asyncio.to_thread(server.kill)
            times["kill"] = loop.time()
            tasks["restart"] = asyncio.create_task(restart_after_outage())
        elif kind == "artifacts" and "first_batch" not in times:
            times["first_batch"] = loop.time()
            await tasks["restart"]  # the job cannot end before the server is back

    try:
        async with asyncio.timeout(60):
            r1 = await submit_video(settings, noisy_video, store=store,
                                    pipelines=["metadata", "scenes"], transfer="rtc",
                                    signaling=sig, link_options=fast_link(), on_event=on_event)
        done = loop.time()
        assert r1.ok, r1.error
        assert r1.worker == "w-proc" and r1.transfer == "rtc"
        assert times["kill"] < times["up"] < done  # the outage lay inside the job
        assert r1.artifacts == 5
        assert len(await store_contents(store, r1.asset_id)) == 5
        worker_s = times["worker_back"] - times["up"]
        client_s = times["client_back"] - times["up"]
        log.info("outage %.2f s; worker re-registered %.2f s, client reconnected %.2f s after "
                 "the restart; job %.2f s", times["up"] - times["kill"], worker_s, client_s,
                 r1.seconds)
        assert worker_s < 10 and client_s < 10

        # the room survived the crash: tokens, policy, revocation
        admin = SignalingClient(server.url, token=tokens["admin"], reconnect=False)
        await admin.connect()
        policy = (await admin.request("get_policy"))["policy"]
        await admin.close()
        assert {k: policy[k] for k in POLICY} == POLICY
        assert sig.welcome.get("room") == "faults-lab"
        revoked = SignalingClient(server.url, token=spare["token"], reconnect=False)
        with pytest.raises(SignalingError) as refused:
            await revoked.connect()
        await revoked.close()
        assert refused.value.code == "TOKEN_REVOKED"

        # and routes again: a second job through the restarted server
        async with asyncio.timeout(60):
            r2 = await submit_video(settings, noisy_video, store=store, pipelines=["scenes"],
                                    signaling=sig, link_options=fast_link())
        assert r2.ok, r2.error
        assert (r2.worker, r2.transfer) == ("w-proc", "cached")
        assert "Traceback" not in procs.log("w-proc")
    finally:
        await store.close()
        await sig.close()
        if "restart" in tasks and not tasks["restart"].done():
            tasks["restart"].cancel()
