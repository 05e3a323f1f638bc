"""With a real signaling server and a real worker agent: jobs belong to the client token that
submitted them, and a client that requires vouched workers refuses one the admin did not vouch
for before any job is sent."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rtc_annotator import trust
from rtc_annotator.client.submit import attach_job, submit_video
from rtc_annotator.protocol import auth
from rtc_annotator.protocol import peer as proto
from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.store import Store
from rtc_annotator.transport.peer import CallbackSignaler, PeerLink
from tests.e2e.conftest import (  # noqa: F401 - fixtures
    MakeSettings,
    StartWorker,
    fast_link,
    make_settings,
    room_tokens,
    signaling_server,
    start_worker,
    stop_worker,
)
from tests.transport.test_ownership import reply

SLOW_SCENES = {"scenes": {"downscale_width": 0, "min_scene_len_ms": 200}}
COLORS = ("red", "blue") * 4


async def _second_client_token(url: str, admin_token: str) -> str:
    admin = SignalingClient(url, token=admin_token, reconnect=False)
    await admin.connect()
    try:
        return str((await admin.request("issue_token", role="client", ttl_s=600))["token"])
    finally:
        await admin.close()


async def _raw_link(settings: Any) -> tuple[SignalingClient, PeerLink]:
    sig = SignalingClient.from_settings(settings.signaling, name="mallory")
    await sig.connect()
    routed = await sig.route(pipelines=["metadata"])
    options = dataclasses.replace(fast_link(), session_id=str(routed["session_id"]))
    link = await PeerLink.connect(CallbackSignaler.for_session(sig, str(routed["session_id"])),
                                  offer=True, role="client", name="mallory", options=options)
    return sig, link


async def test_another_client_token_cannot_take_or_cancel_a_job(
    make_video: Any, make_settings: MakeSettings, start_worker: StartWorker,  # noqa: F811
    room_tokens: dict[str, str], signaling_server: Any,  # noqa: F811
) -> None:
    video = make_video(colors=COLORS, seconds_each=1.0, size="640x360")
    await start_worker("gpu-own")
    alice = make_settings("alice", role="client")
    mallory = make_settings("mallory", role="client")
    mallory.signaling.token = await _second_client_token(signaling_server.url,
                                                         room_tokens["admin"])
    store = await Store.open(alice.database.url)
    try:
        r1 = await submit_video(alice, video, store=store, pipelines=["metadata", "scenes"],
                                options=SLOW_SCENES, link_options=fast_link(), detach=True)
        assert r1.detached and r1.error is None, r1

        sig, link = await _raw_link(mallory)
        try:
            for msg in (proto.Attach(job_id=r1.job_id, last_acked_seq=0),
                        proto.Cancel(job_id=r1.job_id)):
                answer = await reply(link, msg, proto.JobRejected)
                assert isinstance(answer, proto.JobRejected)
                assert answer.error.code == "NOT_JOB_OWNER", answer
            answer = await reply(link, proto.Cancel(job_id="no-such-job"), proto.JobRejected)
            assert isinstance(answer, proto.JobRejected) and answer.error.code == "UNKNOWN_JOB"
        finally:
            await link.close()
            await sig.close()

        # the owner still gets everything: nothing was moved or cancelled
        r2 = await attach_job(alice, r1.job_id, store=store, link_options=fast_link())
        assert r2.ok, r2.error
        scenes = await store.artifacts(r1.asset_id, artifact_type="scene",
                                       run_id=f"{r1.job_id}-scenes")
        assert len(scenes) == len(COLORS)
    finally:
        await store.close()


async def test_client_requiring_vouches_refuses_an_unvouched_worker(
    tmp_path: Path, make_video: Any, make_settings: MakeSettings,  # noqa: F811
    start_worker: StartWorker,  # noqa: F811
) -> None:
    video = make_video(colors=("red", "blue"), seconds_each=1.0)
    admin = Ed25519PrivateKey.generate()
    # a vouched worker: its key is made first, the admin signs it, the vouch lies next to it
    vouched_key = trust.load_or_create_key(tmp_path / "gpu-v" / "identity.key")
    (tmp_path / "gpu-v" / "identity.vouch").write_text(auth.sign_vouch(
        admin, name="gpu-v", public_key=auth.public_key_text(vouched_key), room="lab",
        valid_s=3600))
    client = make_settings("laptop-v", role="client")
    client.trust.admin_public_keys = [auth.public_key_text(admin)]
    client.trust.require_vouched = True
    client.signaling.room = "lab"
    store = await Store.open(client.database.url)
    try:
        unvouched = await start_worker("gpu-u")
        r1 = await submit_video(client, video, store=store, pipelines=["metadata"],
                                link_options=fast_link())
        assert not r1.ok and r1.error is not None and r1.error.code == "PEER_NOT_TRUSTED", r1
        assert "no vouch" in r1.error.message
        assert unvouched.server.jobs == {}  # the job never reached the worker

        await stop_worker(unvouched)
        vouched = await start_worker("gpu-v")
        assert vouched.identity.public_key == auth.public_key_text(vouched_key)
        r2 = await submit_video(client, video, store=store, pipelines=["metadata"],
                                link_options=fast_link())
        assert r2.ok, r2.error
        assert r2.worker == "gpu-v"
    finally:
        await store.close()
