"""Peers prove their long-term keys over *this* connection; a relaying signaling server is caught.

Real aiortc peer connections on 127.0.0.1 throughout. The hostile "signaling server" here answers
the client's offer itself with a second peer connection of its own, opens a third to the real
worker and forwards every data channel message between the two: exactly what a compromised
signaling operator can do, since peers trust whatever SDP it relays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.protocol import auth
from rtc_annotator.protocol import peer as proto
from rtc_annotator.transport.ice import restrict_host_candidates, rtc_configuration
from rtc_annotator.transport.peer import LinkOptions, PeerLink, signaler_pair
from rtc_annotator.trust import LocalIdentity, TrustPolicy
from tests.transport.conftest import LOCAL_ICE, Env, RecordingSink, ToyExecutor, make_file

ROOM = "lab"


def opts(session: str = "s1", identity: LocalIdentity | None = None,
         trust: TrustPolicy | None = None) -> LinkOptions:
    return LinkOptions(ice=LOCAL_ICE, connect_timeout_s=15, session_id=session,
                       identity=identity, trust=trust or TrustPolicy())


def vouched_worker(admin: Ed25519PrivateKey, *, room: str = ROOM,
                   valid_s: float = 3600) -> LocalIdentity:
    key = Ed25519PrivateKey.generate()
    vouch = auth.sign_vouch(admin, name="gpu1", public_key=auth.public_key_text(key), room=room,
                            valid_s=valid_s)
    return LocalIdentity(key=key, vouch=vouch)


def strict(admin: Ed25519PrivateKey) -> TrustPolicy:
    return TrustPolicy(admin_public_keys=(auth.public_key_text(admin),), require_vouched=True,
                       room=ROOM)


async def connect_pair(client_opts: LinkOptions, worker_opts: LinkOptions,
                       worker_cls: type[PeerLink] = PeerLink,
                       ) -> tuple[PeerLink | BaseException, PeerLink | BaseException]:
    a, b = signaler_pair()
    res = await asyncio.gather(
        PeerLink.connect(a, offer=True, role="client", name="laptop", options=client_opts),
        worker_cls.connect(b, offer=False, role="worker", name="gpu1", options=worker_opts),
        return_exceptions=True)
    return res[0], res[1]


async def close_all(*links: Any) -> None:
    for link in links:
        if isinstance(link, PeerLink):
            await link.close("test over")


# --------------------------------------------------------------------------- vouched keys


async def test_vouched_worker_is_accepted_and_runs_the_job(env: Env, tmp_path: Path) -> None:
    admin = Ed25519PrivateKey.generate()
    worker_id = vouched_worker(admin)
    client, worker = await connect_pair(opts(trust=strict(admin)), opts(identity=worker_id))
    assert isinstance(client, PeerLink) and isinstance(worker, PeerLink)
    env.links += [client, worker]
    assert client.peer_key == worker_id.public_key
    assert client.peer_vouch is not None and client.peer_vouch.name == "gpu1"
    assert worker.peer_key is None  # this client proved no key of its own
    server = env.server(ToyExecutor())
    env.tasks.append(asyncio.create_task(server.serve(worker)))
    sink = RecordingSink()
    result = await env.client(client, sink).submit(make_file(tmp_path / "v.mp4", 5000),
                                                   pipelines={"scenes": {}}, transfer="rtc")
    assert result.ok and len(sink.envelopes) == 6


@pytest.mark.parametrize("case", ["no_vouch", "other_admin", "other_room", "expired", "no_key",
                                  "vouch_for_other_key"])
async def test_worker_without_a_valid_vouch_is_refused(case: str) -> None:
    admin = Ed25519PrivateKey.generate()
    worker_id: LocalIdentity | None = vouched_worker(admin)
    assert worker_id is not None
    if case == "no_vouch":
        worker_id = LocalIdentity(key=worker_id.key)
    elif case == "other_admin":
        worker_id = vouched_worker(Ed25519PrivateKey.generate())
    elif case == "other_room":
        worker_id = vouched_worker(admin, room="elsewhere")
    elif case == "expired":
        worker_id = vouched_worker(admin, valid_s=-10)
    elif case == "no_key":
        worker_id = None
    else:  # a genuine vouch, presented with another key
        worker_id = LocalIdentity(key=Ed25519PrivateKey.generate(), vouch=worker_id.vouch)
    client, worker = await connect_pair(opts(trust=strict(admin)), opts(identity=worker_id))
    try:
        assert isinstance(client, auth.PeerNotTrusted), client
        assert client.code == "PEER_NOT_TRUSTED"
        # the client closes the connection: the worker's link ends (or never completes)
        if isinstance(worker, PeerLink):
            await asyncio.wait_for(worker.closed.wait(), 10)
        else:
            assert isinstance(worker, RtcAnnotatorError)
    finally:
        await close_all(client, worker)


async def test_pinning_off_keeps_todays_behaviour_and_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rtc_annotator.transport.peer")
    client, worker = await connect_pair(opts(), opts(identity=None))
    try:
        assert isinstance(client, PeerLink) and isinstance(worker, PeerLink)
        assert client.peer_key is None and client.peer_vouch is None
        lines = [r.getMessage() for r in caplog.records if "require_vouched is off" in
                 r.getMessage()]
        assert len(lines) == 1 and "role=client" in lines[0] and "worker_key=-" in lines[0]
    finally:
        await close_all(client, worker)


# --------------------------------------------------------------------------- replay


class ThiefLink(PeerLink):
    """A worker without the key that presents a proof it captured on another connection."""

    stolen: proto.AuthProof | None = None

    def _make_proof(self, challenge: proto.AuthChallenge) -> proto.AuthProof:
        assert self.stolen is not None
        return self.stolen


async def test_stolen_proof_replayed_on_another_connection_fails() -> None:
    admin = Ed25519PrivateKey.generate()
    worker_id = vouched_worker(admin)
    first_client, first_worker = await connect_pair(opts("s1", trust=strict(admin)),
                                                    opts("s1", identity=worker_id))
    assert isinstance(first_client, PeerLink)
    stolen = first_client.peer_proof
    assert stolen is not None and stolen.public_key == worker_id.public_key
    await close_all(first_client, first_worker)
    ThiefLink.stolen = stolen
    for session in ("s1", "s2"):  # same session id or another: new nonce, new fingerprints
        client, thief = await connect_pair(opts(session, trust=strict(admin)), opts(session),
                                           worker_cls=ThiefLink)
        try:
            assert isinstance(client, auth.AuthFailed), client
            assert client.code == "PEER_AUTH_FAILED"
        finally:
            await close_all(client, thief)


# --------------------------------------------------------------------------- man in the middle


class MitmRelay:
    """A hostile signaling server: answers the client's offer itself and bridges the data
    channels to a second peer connection it opens to the real worker."""

    def __init__(self) -> None:
        self.client_side, self._to_client = signaler_pair()
        self._to_worker, self.worker_side = signaler_pair()
        self.to_worker_types: list[str] = []
        self.pcs: list[RTCPeerConnection] = []

    async def run(self) -> None:
        pc_c = RTCPeerConnection(rtc_configuration(LOCAL_ICE))
        pc_w = RTCPeerConnection(rtc_configuration(LOCAL_ICE))
        self.pcs += [pc_c, pc_w]
        towards_worker = {label: pc_w.createDataChannel(label, ordered=True)
                          for label in ("control", "bulk")}
        restrict_host_candidates(pc_w, ["127.0.0.1"])
        await pc_w.setLocalDescription(await pc_w.createOffer())
        await self._to_worker.send({"kind": "offer", "type": "offer",
                                    "sdp": pc_w.localDescription.sdp})

        @pc_c.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            other = towards_worker[channel.label]
            self._bridge(channel, other, record=channel.label == "control")
            self._bridge(other, channel, record=False)

        offer = await self._to_client.recv()
        await pc_c.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        restrict_host_candidates(pc_c, ["127.0.0.1"])
        await pc_c.setLocalDescription(await pc_c.createAnswer())
        await self._to_client.send({"kind": "answer", "type": "answer",
                                    "sdp": pc_c.localDescription.sdp})
        answer = await self._to_worker.recv()
        await pc_w.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    def _bridge(self, src: RTCDataChannel, dst: RTCDataChannel, *, record: bool) -> None:
        pending: list[Any] = []

        def flush() -> None:
            while pending and dst.readyState == "open":
                dst.send(pending.pop(0))

        dst.on("open", flush)

        @src.on("message")
        def forward(data: Any) -> None:
            if record:
                with contextlib.suppress(Exception):
                    self.to_worker_types.append(proto.decode(data).type)
            pending.append(data)
            flush()

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()


async def mitm_connect(relay: MitmRelay, client_opts: LinkOptions, worker_opts: LinkOptions,
                       ) -> tuple[PeerLink | BaseException, PeerLink | BaseException]:
    res = await asyncio.gather(
        PeerLink.connect(relay.client_side, offer=True, role="client", name="laptop",
                         options=client_opts),
        PeerLink.connect(relay.worker_side, offer=False, role="worker", name="gpu1",
                         options=worker_opts),
        relay.run(), return_exceptions=True)
    assert res[2] is None, res[2]
    return res[0], res[1]


async def test_relay_without_keys_goes_unnoticed(env: Env, tmp_path: Path) -> None:
    """Control: the relay really works, so without keys a relayed job runs (today's gap)."""
    relay = MitmRelay()
    client, worker = await mitm_connect(relay, opts(), opts())
    try:
        assert isinstance(client, PeerLink) and isinstance(worker, PeerLink)
        env.links += [client, worker]
        server = env.server(ToyExecutor())
        env.tasks.append(asyncio.create_task(server.serve(worker)))
        result = await env.client(client, RecordingSink()).submit(
            make_file(tmp_path / "v.mp4", 3000), pipelines={"scenes": {}}, transfer="rtc")
        assert result.ok
        assert "JOB_REQUEST" in relay.to_worker_types
    finally:
        await relay.close()


@pytest.mark.parametrize("client_key", [False, True])
async def test_relay_is_detected_and_the_job_never_sent(env: Env, tmp_path: Path,
                                                        client_key: bool) -> None:
    admin = Ed25519PrivateKey.generate()
    worker_id = vouched_worker(admin)
    client_id = LocalIdentity(key=Ed25519PrivateKey.generate()) if client_key else None
    relay = MitmRelay()
    executor = ToyExecutor()
    server = env.server(executor)
    client, worker = await mitm_connect(relay, opts(identity=client_id, trust=strict(admin)),
                                        opts(identity=worker_id))
    try:
        # the worker's proof names the relay's fingerprints, not the ones the client sees
        assert isinstance(client, auth.AuthFailed), client
        assert "does not match this connection" in client.message
        if client_key:  # the worker catches the relayed client proof the same way
            assert isinstance(worker, RtcAnnotatorError)
        elif isinstance(worker, PeerLink):
            env.links.append(worker)
            env.tasks.append(asyncio.create_task(server.serve(worker)))
            await asyncio.sleep(0.5)
        assert "JOB_REQUEST" not in relay.to_worker_types
        assert relay.to_worker_types[:1] == ["HELLO"]
        assert server.jobs == {} and not executor.started.is_set()
    finally:
        await relay.close()


async def test_client_key_is_proven_to_the_worker(env: Env) -> None:
    client_id = LocalIdentity(key=Ed25519PrivateKey.generate())
    client, worker = await connect_pair(opts(identity=client_id), opts())
    assert isinstance(client, PeerLink) and isinstance(worker, PeerLink)
    env.links += [client, worker]
    assert worker.peer_key == client_id.public_key
    assert client.peer_key is None


# --------------------------------------------------------------------------- pure functions

SDP = ("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
       "a=fingerprint:sha-256 ab:CD:01\r\na=fingerprint:SHA-512 ff:00\r\n"
       "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=fingerprint:sha-256 AB:cd:01\r\n")


def test_fingerprints_are_canonical_and_required() -> None:
    assert auth.sdp_fingerprints(SDP) == "sha-256 AB:CD:01,sha-512 FF:00"
    with pytest.raises(auth.AuthFailed, match="no DTLS fingerprint"):
        auth.sdp_fingerprints("v=0\r\n")


def test_a_proof_verifies_only_on_the_connection_and_nonce_it_was_made_for() -> None:
    key = Ed25519PrivateKey.generate()
    nonce = auth.new_nonce()
    worker_side = auth.Binding("s1", local_fp="W", remote_fp="C")
    client_side = auth.Binding("s1", local_fp="C", remote_fp="W")
    sig = auth.make_proof(key, "worker", worker_side, nonce)
    pub = auth.public_key_text(key)
    auth.verify_proof(pub, sig, "worker", client_side, nonce)
    for binding, role, n in ((auth.Binding("s2", "C", "W"), "worker", nonce),  # other session
                             (auth.Binding("s1", "C", "M"), "worker", nonce),  # relayed
                             (auth.Binding("s1", "M", "W"), "worker", nonce),  # relayed
                             (client_side, "client", nonce),  # reflected as the other role
                             (client_side, "worker", auth.new_nonce())):  # replayed
        with pytest.raises(auth.AuthFailed, match="does not match this connection"):
            auth.verify_proof(pub, sig, role, binding, n)  # type: ignore[arg-type]


def test_a_vouch_cannot_be_edited() -> None:
    admin = Ed25519PrivateKey.generate()
    worker = auth.public_key_text(Ed25519PrivateKey.generate())
    text = auth.sign_vouch(admin, name="gpu1", public_key=worker, room=ROOM, valid_s=60)
    admins = (auth.public_key_text(admin),)
    assert auth.check_vouch(text, public_key=worker, admin_keys=admins, room=ROOM).name == "gpu1"
    payload, sig = text.split(".")
    body = auth.unb64(payload, what="vouch").replace(b'"lab"', b'"zoo"')
    with pytest.raises(auth.PeerNotTrusted, match="bad signature"):
        auth.check_vouch(auth.b64(body) + "." + sig, public_key=worker, admin_keys=admins,
                         room="zoo")
    with pytest.raises(auth.PeerNotTrusted, match="unreadable"):
        auth.check_vouch("garbage", public_key=worker, admin_keys=admins, room=ROOM)
