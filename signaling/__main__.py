"""``python -m signaling --host H --port P --state FILE --admin-secret S [--cert C --key K]``."""

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


def parse_args(argv: list[str] | None = None) -> ServerConfig:
    ap = argparse.ArgumentParser(prog="python -m signaling", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    ap.add_argument("--state", type=Path, default=Path("signaling-state.sqlite3"),
                    help="SQLite file keeping rooms, policies and revocations")
    ap.add_argument("--admin-secret", default=os.environ.get("SIGNALING_ADMIN_SECRET"),
                    help="server admin secret (or $SIGNALING_ADMIN_SECRET)")
    ap.add_argument("--cert", type=Path, help="TLS certificate (PEM): serve wss:// directly")
    ap.add_argument("--key", type=Path, help="TLS private key (PEM)")
    ap.add_argument("--stun", action="append", default=[], help="stun: URL to hand out")
    ap.add_argument("--turn", action="append", default=[], help="turn: URL to hand out")
    ap.add_argument("--turn-secret", default=os.environ.get("SIGNALING_TURN_SECRET"),
                    help="coturn static-auth-secret (or $SIGNALING_TURN_SECRET)")
    ap.add_argument("--turn-ttl", type=int, default=3600, help="TURN credential lifetime, s")
    ap.add_argument("--heartbeat", type=float, default=5.0, help="heartbeat interval, s")
    ap.add_argument("--gone-after", type=float, default=12.0,
                    help="close a peer silent this long, s")
    ap.add_argument("--rate", type=float, default=50.0, help="frames/s per connection")
    ap.add_argument("--burst", type=float, default=200.0, help="rate-limit burst")
    ap.add_argument("--log-level", default="INFO")
    a = ap.parse_args(argv)
    if not a.admin_secret:
        ap.error("--admin-secret (or $SIGNALING_ADMIN_SECRET) is required")
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
