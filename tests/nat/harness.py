"""Shared pieces of the NAT tests and the TURN benchmark: processes in namespaces, coturn,
the signaling server, a worker, client configs. Everything started is stopped by pid."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from tests.nat.netlab import HOST_LAN, PUB_ADDR, NatLab

ROOT = Path(__file__).resolve().parents[2]
PEER = str(Path(__file__).with_name("nat_peer.py"))
PY = sys.executable
TURN_PORT = 3478

# The relay's peer-address rules (see docs/nat.md): deny every private range, allow the lab's
# "public internet" (10.77.0.0/24, where the relay addresses live) again.
PEER_RULES = [
    "--denied-peer-ip=10.0.0.0-10.255.255.255",
    "--denied-peer-ip=172.16.0.0-172.31.255.255",
    "--denied-peer-ip=192.168.0.0-192.168.255.255",
    "--allowed-peer-ip=10.77.0.0-10.77.0.255",
]


@dataclass
class Procs:
    """Every process a test starts; :meth:`stop_all` ends them by pid (SIGTERM, then SIGKILL)."""

    logdir: Path
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, args: list[str],
              env_extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
        env.update(YOLO_OFFLINE="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(ROOT), **(env_extra or {}))
        with (self.logdir / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    cwd=ROOT, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        return (self.logdir / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str) -> None:
        for n, proc in self.procs:
            if n == name:
                stop_process(proc)

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            stop_process(proc)
        self.procs.clear()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=5)


def run(args: list[str], timeout: float = 30,
        env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env)


def wait_for(predicate: Callable[[], object], what: str, timeout_s: float = 10.0, *,
             proc: subprocess.Popen[bytes] | None = None,
             log: Callable[[], str] | None = None) -> None:
    """Poll ``predicate``; fail early when ``proc`` exits, and show ``log``'s tail on failure."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            tail = log()[-3000:] if log else ""
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{tail}")
        time.sleep(0.05)
    tail = log()[-3000:] if log else ""
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tail}")


def start_coturn(lab: NatLab, procs: Procs, name: str, secret: str, *, port: int,
                  min_port: int, extra: list[str]) -> None:
    tmp = procs.logdir
    # the secret in a private config file, not an argument (ps shows those to every user)
    conf = tmp / (name + ".conf")
    conf.touch(mode=0o600)
    conf.write_text(f"static-auth-secret={secret}\n")
    proc = procs.start(name, [
        *lab.exec_args("pub"), "turnserver", "-c", str(conf), "--log-file=stdout", "-v",
        f"--listening-ip={PUB_ADDR}", f"--relay-ip={PUB_ADDR}", f"--listening-port={port}",
        f"--min-port={min_port}", f"--max-port={min_port + 39}",
        "--use-auth-secret", "--realm=natlab.test",
        "--no-tls", "--no-dtls", "--no-cli", f"--pidfile={tmp / (name + '.pid')}",
        f"--userdb={tmp / (name + '.db')}", *extra,
    ])
    wait_for(lambda: "UDP listener opened" in procs.log(name)
             and "Relay ports initialization done" in procs.log(name), f"{name} to listen", 30,
             proc=proc, log=lambda: procs.log(name))


def start_room(lab: NatLab, procs: Procs, secret: str | None, turn_url: str | None,
               tmp_path: Path) -> dict[str, str]:
    """Signaling server in ``pub`` (handing out ``turn_url`` with credentials from ``secret``,
    or no ICE servers when None), a room, and its worker and client tokens."""
    # secrets travel in the environment, never as arguments: a random secret may begin with
    # "-" (argparse would take it for an option), and a command line is visible in ps
    admin_secret = secrets.token_urlsafe(16)
    secret_env = {"SIGNALING_ADMIN_SECRET": admin_secret}
    turn: list[str] = []
    if turn_url and secret:
        turn = ["--turn", turn_url, "--turn-ttl", "600"]
        secret_env["SIGNALING_TURN_SECRET"] = secret
    # port 0: the kernel picks a free port, so a previous test's server still letting go of
    # its socket can never make this one fail to bind
    proc = procs.start("signaling", [
        *lab.exec_args("pub"), PY, "-m", "signaling", "--host", PUB_ADDR,
        "--port", "0", "--state", str(tmp_path / "signaling.sqlite3"),
        *turn, "--heartbeat", "1", "--gone-after", "4", "--log-level", "INFO"],
        env_extra=secret_env)
    listening = re.compile(r"signaling server listening on (ws://\S+)")
    wait_for(lambda: listening.search(procs.log("signaling")), "the signaling server", 60,
             proc=proc, log=lambda: procs.log("signaling"))
    match = listening.search(procs.log("signaling"))
    assert match is not None
    url = match.group(1)
    r = run([*lab.exec_args("pub"), PY, PEER, "room", "--url", url],
            env_extra={"SIGNALING_ADMIN_SECRET": admin_secret})
    assert r.returncode == 0, r.stderr
    return {"url": url, **json.loads(r.stdout)}


def start_worker(lab: NatLab, procs: Procs, room: dict[str, str], tmp_path: Path, *,
                 ns: str = "lanB", host: str = HOST_LAN["B"]) -> None:
    """``rtc-annotator worker`` (the real CLI) in namespace ``ns``, host candidates ``host``."""
    cfg = {
        "signaling": {"url": room["url"], "token": room["worker"], "heartbeat_s": 1.0},
        "worker": {"name": "natlab-worker", "cache_dir": str(tmp_path / "worker-cache"),
                   "job_slots": 1, "pipelines": ["metadata", "scenes"]},
        "ice": {"servers": [], "host_addresses": [host]},
    }
    path = tmp_path / "worker.toml"
    path.write_text(tomli_w.dumps(cfg))
    procs.start("worker", [*lab.exec_args(ns), PY, "-m", "rtc_annotator",
                           "--log-level", "INFO", "worker", "--config", str(path)])
    r = run([*lab.exec_args("pub"), PY, PEER, "wait-worker", "--url", room["url"],
             "--token", room["client"], "--name", "natlab-worker", "--timeout", "20"])
    assert r.stdout.strip() == "online", procs.log("worker")


def client_config(room: dict[str, str], tmp_path: Path) -> Path:
    """Config of a client in ``lanA`` (host candidates: its LAN address only)."""
    cfg = {
        "signaling": {"url": room["url"], "token": room["client"]},
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'client-store.sqlite3'}"},
        "ice": {"servers": [], "host_addresses": [HOST_LAN["A"]]},
    }
    path = tmp_path / "client.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path


def run_client(lab: NatLab, config: Path, video: Path,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``nat_peer.py client`` in ``lanA``: stdout is the JSON result, stderr the logs."""
    return run([*lab.exec_args("lanA"), PY, PEER, "client", "--config", str(config),
                "--video", str(video)], timeout=timeout)
