"""``python -m signaling [--config F] --host H --port P --state FILE [--cert C --key K]``.

Settings come from flags, ``RTC_ANNOTATOR_SIGNALING_SERVER_<KEY>`` variables and the
``[signaling_server]`` section of the config file, in that order. Secrets come from the
environment (``SIGNALING_ADMIN_SECRET``, ``SIGNALING_TURN_SECRET``) or from files
(``--admin-secret-file``, ``--turn-secret-file``): a secret on the command line is readable by
every user of the host (``ps``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from rtc_annotator import logs
from rtc_annotator.config import SignalingServerSettings, load_settings
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.redact import register_secret
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


def _settings(ap: argparse.ArgumentParser, config: Path | None) -> SignalingServerSettings:
    try:
        return load_settings(config).signaling_server
    except RtcAnnotatorError as exc:
        ap.error(f"{exc.message}" + (f" (fix: {exc.hint})" if exc.hint else ""))


def parse_args(argv: list[str] | None = None) -> ServerConfig:
    ap = argparse.ArgumentParser(
        prog="python -m signaling", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every flag but --config, --log-level and --log-format has a key in the "
        "[signaling_server] section of the config file and a variable "
        "RTC_ANNOTATOR_SIGNALING_SERVER_<KEY>; a flag wins over the variable, which wins over "
        "the file (docs/signaling.md).")
    ap.add_argument("--config", type=Path,
                    help="config file with a [signaling_server] section (default: "
                         "$RTC_ANNOTATOR_CONFIG, then the user config file)")
    ap.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, help="port (0: any free port; default 8765)")
    ap.add_argument("--state", type=Path,
                    help="SQLite file keeping rooms, policies and revocations "
                         "(default signaling-state.sqlite3)")
    ap.add_argument("--admin-secret", default=os.environ.get("SIGNALING_ADMIN_SECRET"),
                    help=argparse.SUPPRESS)  # --admin-secret=VALUE: kept for old scripts
    ap.add_argument("--admin-secret-file", type=Path,
                    help="read the admin secret from this file (first line); default "
                         "$SIGNALING_ADMIN_SECRET")
    ap.add_argument("--cert", type=Path, help="TLS certificate (PEM): serve wss:// directly")
    ap.add_argument("--key", type=Path, help="TLS private key (PEM)")
    ap.add_argument("--stun", action="append", help="stun: URL to hand out (repeatable)")
    ap.add_argument("--turn", action="append", help="turn: URL to hand out (repeatable)")
    ap.add_argument("--turn-secret", default=os.environ.get("SIGNALING_TURN_SECRET"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--turn-secret-file", type=Path,
                    help="read the coturn static-auth-secret from this file (first line); "
                         "default $SIGNALING_TURN_SECRET")
    ap.add_argument("--turn-ttl", type=int, help="TURN credential lifetime, s (default 3600)")
    ap.add_argument("--heartbeat", type=float, help="heartbeat interval, s (default 5)")
    ap.add_argument("--gone-after", type=float,
                    help="close a peer silent this long, s (default 12)")
    ap.add_argument("--rate", type=float, help="frames/s per connection (default 50)")
    ap.add_argument("--burst", type=float, help="rate-limit burst (default 200)")
    ap.add_argument("--log-level", default=None,
                    help="DEBUG, INFO, WARNING or ERROR (default $RTC_ANNOTATOR_LOG_LEVEL, "
                         "else INFO)")
    ap.add_argument("--log-format", choices=logs.FORMATS, default=None,
                    help="text or json, one object per line (default "
                         "$RTC_ANNOTATOR_LOG_FORMAT, else text)")
    a = ap.parse_args(argv)
    s = _settings(ap, a.config)

    def pick(flag: object, setting: object) -> Any:
        return setting if flag is None else flag

    admin_file = pick(a.admin_secret_file, s.admin_secret_file)
    turn_file = pick(a.turn_secret_file, s.turn_secret_file)
    admin_secret, turn_secret = a.admin_secret, a.turn_secret
    if admin_file is not None:
        admin_secret = _read_secret(ap, admin_file, "--admin-secret-file")
    if turn_file is not None:
        turn_secret = _read_secret(ap, turn_file, "--turn-secret-file")
    if not admin_secret:
        ap.error("an admin secret is required: set $SIGNALING_ADMIN_SECRET or give "
                 "--admin-secret-file FILE")
    cert, key = pick(a.cert, s.cert), pick(a.key, s.key)
    if (cert is None) != (key is None):
        ap.error("--cert and --key go together")
    turn = pick(a.turn, s.turn)
    if turn and not turn_secret:
        ap.error("--turn needs a TURN secret: set $SIGNALING_TURN_SECRET or give "
                 "--turn-secret-file FILE")
    register_secret(admin_secret)
    register_secret(turn_secret)
    logs.configure(a.log_level, fmt=a.log_format)
    gone_after = pick(a.gone_after, s.gone_after_s)
    return ServerConfig(
        state_path=pick(a.state, s.state), admin_secret=admin_secret, host=pick(a.host, s.host),
        port=pick(a.port, s.port), heartbeat_s=pick(a.heartbeat, s.heartbeat_s),
        gone_after_s=gone_after, session_grace_s=gone_after,
        rate_per_s=pick(a.rate, s.rate_per_s), rate_burst=pick(a.burst, s.rate_burst),
        cert=cert, key=key,
        ice=IceConfig(stun_urls=tuple(pick(a.stun, s.stun)), turn_urls=tuple(turn),
                      turn_secret=turn_secret, turn_ttl_s=pick(a.turn_ttl, s.turn_ttl_s)))


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
