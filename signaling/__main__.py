"""``python -m signaling --host H --port P --state FILE [--cert C --key K]``.

Secrets come from the environment (``SIGNALING_ADMIN_SECRET``, ``SIGNALING_TURN_SECRET``) or from
files (``--admin-secret-file``, ``--turn-secret-file``): a secret on the command line is readable by
every user of the host (``ps``). ``--admin-secret=VALUE`` still works, for any value (one starting
with ``-`` included, which argparse would take for an option in the two-word form).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from rtc_annotator import logs
from signaling.app import SignalingServer
from signaling.config import ServerConfig
from signaling.turn import IceConfig


def _read_secret(ap: argparse.ArgumentParser, path: Path, flag: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        ap.error(f"{flag}: cannot read {path}: {exc.strerror or exc}")
    secret = text.splitlines()[0] if text else ""
    if not secret:
        ap.error(f"{flag}: {path} is empty; write the secret on its first line")
    return secret


def parse_args(argv: list[str] | None = None) -> ServerConfig:
    ap = argparse.ArgumentParser(prog="python -m signaling", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    ap.add_argument("--state", type=Path, default=Path("signaling-state.sqlite3"),
                    help="SQLite file keeping rooms, policies and revocations")
    ap.add_argument("--admin-secret", default=os.environ.get("SIGNALING_ADMIN_SECRET"),
                    help="server admin secret; prefer $SIGNALING_ADMIN_SECRET or "
                         "--admin-secret-file (a command line is visible in ps)")
    ap.add_argument("--admin-secret-file", type=Path,
                    help="read the admin secret from this file (first line)")
    ap.add_argument("--cert", type=Path, help="TLS certificate (PEM): serve wss:// directly")
    ap.add_argument("--key", type=Path, help="TLS private key (PEM)")
    ap.add_argument("--stun", action="append", default=[], help="stun: URL to hand out")
    ap.add_argument("--turn", action="append", default=[], help="turn: URL to hand out")
    ap.add_argument("--turn-secret", default=os.environ.get("SIGNALING_TURN_SECRET"),
                    help="coturn static-auth-secret; prefer $SIGNALING_TURN_SECRET or "
                         "--turn-secret-file")
    ap.add_argument("--turn-secret-file", type=Path,
                    help="read the coturn static-auth-secret from this file (first line)")
    ap.add_argument("--turn-ttl", type=int, default=3600, help="TURN credential lifetime, s")
    ap.add_argument("--heartbeat", type=float, default=5.0, help="heartbeat interval, s")
    ap.add_argument("--gone-after", type=float, default=12.0,
                    help="close a peer silent this long, s")
    ap.add_argument("--rate", type=float, default=50.0, help="frames/s per connection")
    ap.add_argument("--burst", type=float, default=200.0, help="rate-limit burst")
    ap.add_argument("--log-level", default="INFO")
    a = ap.parse_args(argv)
    if a.admin_secret_file is not None:
        a.admin_secret = _read_secret(ap, a.admin_secret_file, "--admin-secret-file")
    if a.turn_secret_file is not None:
        a.turn_secret = _read_secret(ap, a.turn_secret_file, "--turn-secret-file")
    if not a.admin_secret:
        ap.error("an admin secret is required: set $SIGNALING_ADMIN_SECRET or give "
                 "--admin-secret-file FILE")
    if (a.cert is None) != (a.key is None):
        ap.error("--cert and --key go together")
    if a.turn and not a.turn_secret:
        ap.error("--turn needs --turn-secret")
    logs.configure(a.log_level)
    return ServerConfig(
        state_path=a.state, admin_secret=a.admin_secret, host=a.host, port=a.port,
        heartbeat_s=a.heartbeat, gone_after_s=a.gone_after, session_grace_s=a.gone_after,
        rate_per_s=a.rate, rate_burst=a.burst, cert=a.cert, key=a.key,
        ice=IceConfig(stun_urls=tuple(a.stun), turn_urls=tuple(a.turn),
                      turn_secret=a.turn_secret, turn_ttl_s=a.turn_ttl))


async def serve(config: ServerConfig) -> None:
    server = SignalingServer(config)
    await server.start()
    sys.stderr.write(f"signaling server listening on {server.url}\n")
    sys.stderr.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
