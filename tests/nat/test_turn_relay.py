"""NAT traversal through a TURN relay (coturn), on real network namespaces.

A client in ``lanA`` and a worker in ``lanB`` sit behind two masquerading NAT routers and
cannot reach each other (proved first, with plain UDP). The signaling server and coturn run in
``pub``. The signaling server hands both peers a ``turn:`` URL with short-lived credentials
(``$SIGNALING_TURN_SECRET``, coturn's ``use-auth-secret`` scheme); the client submits a video with
``transfer=rtc``: the file crosses the relay, the worker runs the job, the artifacts come back
into the client's store. Both peers must log a selected candidate pair of type ``relay``.

A second coturn started *without* the peer-address rules shows why the first probe failed:
coturn closes an allocation when relaying to a peer address it has no route to (the other
side's private host candidate) fails with ``ENETUNREACH``. See docs/nat.md.

Needs root, ``ip netns``, iptables and coturn (``turnserver``); skips with the reason otherwise.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signaling.turn import turn_credentials
from tests.nat import netlab
from tests.nat.harness import (
    PEER,
    PEER_RULES,
    PY,
    TURN_PORT,
    Procs,
    client_config,
    run,
    run_client,
    start_coturn,
    start_room,
    start_worker,
    wait_for,
)
from tests.nat.netlab import HOST_LAN, NAT_WAN, PUB_ADDR, NatLab

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module")
def lab() -> Iterator[NatLab]:
    reason = netlab.available()
    if reason:
        pytest.skip(f"NAT lab unavailable: {reason}")
    if shutil.which("turnserver") is None:
        pytest.skip("coturn is not installed (turnserver not found): apt-get install coturn, "
                    "or run the suite through scripts/run-tests.sh, which installs it")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    lab = NatLab()
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def coturn(lab: NatLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Procs]]:
    """coturn in ``pub`` with the options docs/nat.md prescribes; yields (secret, procs)."""
    procs = Procs(tmp_path_factory.mktemp("coturn"))
    secret = secrets.token_urlsafe(24)
    try:
        start_coturn(lab, procs, "coturn", secret, port=TURN_PORT, min_port=49160,
                      extra=PEER_RULES)
        yield secret, procs
    finally:
        procs.stop_all()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~4.5 MB: 2 s of noise (hard to compress) then 2 s of one colour: a cut at 2000 ms."""
    out = tmp_path_factory.mktemp("natvideo") / "noisy.mp4"
    subprocess.run([
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=2",
        "-f", "lavfi", "-i", "color=c=maroon:s=320x240:r=25:d=2",
        "-filter_complex", "[0:v]noise=alls=60:allf=t[a];[a][1:v]concat=n=2:v=1[v]",
        "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "8",
        "-pix_fmt", "yuv420p", str(out)], check=True, timeout=60)
    return out


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


def _probe(lab: NatLab, ns: str, to: str) -> str:
    r = run([*lab.exec_args(ns), PY, PEER, "udp-probe", "--to", to])
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_lans_cannot_reach_each_other(lab: NatLab, procs: Procs) -> None:
    """The premise: without a relay there is no path between the two LANs."""
    for ns, bind in (("lanB", f"{HOST_LAN['B']}:40000"), ("pub", f"{PUB_ADDR}:40000")):
        procs.start(f"echo-{ns}", [*lab.exec_args(ns), PY, PEER, "udp-echo", "--bind", bind,
                                   "--seconds", "20"])
    for ns in ("lanB", "pub"):
        wait_for(lambda ns=ns: "ready" in procs.log(f"echo-{ns}"), f"echo in {ns}")
    # egress through the NAT works: both LANs reach the public host
    assert _probe(lab, "lanA", f"{PUB_ADDR}:40000") == "reply"
    assert _probe(lab, "lanB", f"{PUB_ADDR}:40000") == "reply"
    # ...but the service in lanB answers neither at its own address nor at its NAT's public
    # address (no port forwarding), and lanB cannot reach lanA either
    assert _probe(lab, "lanA", f"{HOST_LAN['B']}:40000") != "reply"
    assert _probe(lab, "lanA", f"{NAT_WAN['B']}:40000") != "reply"
    assert _probe(lab, "lanB", f"{HOST_LAN['A']}:40000") != "reply"


@pytest.mark.parametrize("case", [
    ("good", "allocated"), ("wrong-secret", "refused 401"), ("expired", "refused 401")])
def test_turn_credentials_from_the_signaling_scheme(
    lab: NatLab, coturn: tuple[str, Procs], case: tuple[str, str]
) -> None:
    """coturn accepts exactly the credentials signaling/turn.py mints with its secret."""
    secret, _ = coturn
    kind, expected = case
    now = time.time() - 7200 if kind == "expired" else None
    user, password = turn_credentials(secret if kind != "wrong-secret" else "not-the-secret",
                                      "probe", ttl_s=600, now=now)
    r = run([*lab.exec_args("lanA"), PY, PEER, "turn-alloc", "--server",
              f"{PUB_ADDR}:{TURN_PORT}", "--user", user, "--password", password])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(expected), r.stdout
    if expected == "allocated":
        assert r.stdout.strip().startswith(f"allocated {PUB_ADDR}:")


PAIR = re.compile(r"ice pair selected local_type=(\w+) local=(\S+) remote_type=(\w+) "
                  r"remote=(\S+) relayed=(\w+)")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_job_through_turn_relay(lab: NatLab, coturn: tuple[str, Procs], video: Path,
                                procs: Procs, tmp_path: Path, transport: str) -> None:
    secret, turn_procs = coturn
    room = start_room(lab, procs, secret, f"turn:{PUB_ADDR}:{TURN_PORT}?transport={transport}",
                       tmp_path)
    start_worker(lab, procs, room, tmp_path)
    r = run_client(lab, client_config(room, tmp_path), video)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n--- worker\n{procs.log('worker')}"
    out = json.loads(r.stdout)

    # the job ran end to end, the file crossed the relay, the artifacts are in the store
    assert out["ok"] and out["worker"] == "natlab-worker"
    assert out["transfer"] == "rtc"
    assert out["sent_bytes"] == video.stat().st_size
    assert out["artifacts"] == out["stored_artifacts"] == 3  # 1 metadata + 2 scenes
    assert out["next_scene_ms"] == 2000

    # both peers selected a relay <-> relay pair: the data went through coturn
    client_pairs = PAIR.findall(r.stderr)
    wait_for(lambda: PAIR.search(procs.log("worker")) is not None, "the worker's pair log")
    worker_pairs = PAIR.findall(procs.log("worker"))
    for pairs in (client_pairs, worker_pairs):
        assert pairs, "no selected pair logged"
        for local_type, local, remote_type, _remote, relayed in pairs:
            assert (local_type, remote_type, relayed) == ("relay", "relay", "True")
            assert local.startswith(f"{PUB_ADDR}:")
    # each side's remote candidate is the other side's relayed address
    assert client_pairs[0][3] == worker_pairs[0][1] and worker_pairs[0][3] == client_pairs[0][1]

    # coturn authenticated both with the signaling server's short-lived credentials
    turn_log = turn_procs.log("coturn")
    assert re.search(r"username=<\d+:worker-natlab-worker>", turn_log)
    assert re.search(r"username=<\d+:client:[^>]+>", turn_log)
    print(f"TURN/{transport}: connect {out['connect_s']:.2f} s, "
          f"upload {out['upload_bytes'] / 1e6:.1f} MB in {out['upload_s']:.2f} s "
          f"({out['upload_bytes'] / 1e6 / max(out['upload_s'], 1e-3):.1f} MB/s)")


def test_without_peer_rules_one_unroutable_peer_stops_the_relay(
    lab: NatLab, coturn: tuple[str, Procs], procs: Procs
) -> None:
    """The earlier failure, pinned. Default coturn options, on a relay host with no route to
    the peers' private host candidates: relaying one ICE check to such an address fails with
    ENETUNREACH, coturn marks the allocation's relay socket "to be closed", and from then on
    that allocation relays nothing (the channel binds still succeed). With the peer rules of
    docs/nat.md, coturn refuses the private peer (403) and the allocation keeps relaying."""
    secret = secrets.token_urlsafe(24)
    start_coturn(lab, procs, "coturn-default", secret, port=3479, min_port=49300, extra=[])
    runs = {}
    for name, port, key in (("default", 3479, secret), ("rules", TURN_PORT, coturn[0])):
        user, password = turn_credentials(key, "probe", ttl_s=600)
        r = run([*lab.exec_args("lanA"), PY, PEER, "relay-check", "--server",
                  f"{PUB_ADDR}:{port}", "--user", user, "--password", password,
                  "--private", f"{HOST_LAN['B']}:40000"], timeout=30)
        assert r.returncode == 0, r.stderr
        runs[name] = json.loads(r.stdout)
    both = {"a_to_b": True, "b_to_a": True}
    assert runs["default"]["before"] == both
    assert runs["default"]["private_send"] == "bound"
    assert runs["default"]["after"] == {"a_to_b": False, "b_to_a": False}, runs
    assert "udp send: Network is unreachable" in procs.log("coturn-default")
    assert runs["rules"]["before"] == both
    assert "403" in runs["rules"]["private_send"], runs
    assert runs["rules"]["after"] == both, runs
