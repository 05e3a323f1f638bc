"""Small programs the NAT test runs inside its network namespaces (``ip netns exec``).

``SIGNALING_ADMIN_SECRET=S python tests/nat/nat_peer.py room --url U``
    create a room, print ``{"worker": token, "client": token}`` as JSON.
``python tests/nat/nat_peer.py client --config C --video V [--pipelines metadata,scenes]``
    submit the video with ``transfer=rtc`` (the file goes over the data channel) through the
    library's :func:`~rtc_annotator.client.submit.submit_video`; print the result plus timings
    (``connect_s``: routed -> peer connected; ``upload_s``/``upload_bytes``) as JSON on stdout.
    Logs (INFO, including the ``ice pair selected`` line) go to stderr.
``python tests/nat/nat_peer.py turn-alloc --server ADDR:PORT --user U --password P``
    ask the TURN server for an allocation with aioice's TURN client; print ``allocated IP:PORT``
    or ``refused <reason>``.
``python tests/nat/nat_peer.py relay-check --server ADDR:PORT --user U --password P --private ADDR:PORT``
    two allocations A and B relay to each other (``before``); then A sends one datagram to a
    private peer address, as ICE does to the other side's host candidate; then A and B relay
    again (``after``). Prints one JSON object (see :func:`_relay_check`).
``python tests/nat/nat_peer.py udp-echo --bind ADDR:PORT --seconds N``
    answer every UDP datagram with the same bytes (prints ``ready`` when bound).
``python tests/nat/nat_peer.py udp-probe --to ADDR:PORT``
    send one datagram, print ``reply``, ``timeout`` or ``error:<errno name>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _room(url: str, admin_secret: str) -> dict[str, str]:
    from rtc_annotator.signaling_client import SignalingClient

    root = SignalingClient(url, admin_secret=admin_secret, reconnect=False, connect_timeout_s=5)
    await root.connect()
    created = await root.request("create_room", name="natlab")
    await root.close()
    admin = SignalingClient(url, token=created["token"], reconnect=False)
    await admin.connect()
    out = {r: (await admin.request("issue_token", role=r, ttl_s=600))["token"]
           for r in ("worker", "client")}
    await admin.close()
    return out


async def _wait_worker(url: str, token: str, name: str, timeout_s: float) -> bool:
    from rtc_annotator.signaling_client import SignalingClient

    admin = SignalingClient(url, token=token, reconnect=False)
    await admin.connect()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if name in {w["name"] for w in await admin.list_workers()}:
                return True
            await asyncio.sleep(0.1)
        return False
    finally:
        await admin.close()


async def _client(config: Path, video: Path, pipelines: list[str]) -> dict[str, Any]:
    from rtc_annotator.client.submit import submit_video
    from rtc_annotator.config import load_settings
    from rtc_annotator.store import Store

    settings = load_settings(config)
    marks: dict[str, float] = {}
    upload: dict[str, float] = {}

    def on_event(kind: str, data: dict[str, Any]) -> None:
        now = time.monotonic()
        marks.setdefault(kind, now)
        if kind == "upload":
            upload.setdefault("first", now)
            upload["last"] = now
            upload["bytes"] = float(data["done"])

    from rtc_annotator.query import jump

    store = await Store.open(settings.database.url)
    try:
        result = await submit_video(settings, video, store=store, pipelines=pipelines,
                                    transfer="rtc", on_event=on_event)
        out = result.to_dict()
        out["stored_artifacts"] = await store.count_artifacts(result.asset_id)
        if result.ok and "scenes" in pipelines:
            scene = await jump(store, result.asset_id, "scene", 0, "next")
            out["next_scene_ms"] = scene.span_start_ms if scene is not None else None
    finally:
        await store.close()
    if "routed" in marks and "connected" in marks:
        out["connect_s"] = round(marks["connected"] - marks["routed"], 3)
    if "first" in upload:
        # from the moment the file is offered (connected) to the last acknowledged chunk
        out["upload_s"] = round(upload["last"] - marks.get("connected", upload["first"]), 3)
        out["upload_bytes"] = int(upload["bytes"])
    return out


async def _turn_alloc(server: str, user: str, password: str, transport: str) -> str:
    from aioice import stun, turn

    try:
        async with asyncio.timeout(5):
            endpoint, _ = await turn.create_turn_endpoint(
                asyncio.DatagramProtocol, server_addr=_addr(server), username=user,
                password=password, transport=transport)
    except stun.TransactionFailed as exc:
        return f"refused {exc.response.error_code}"
    except (TimeoutError, stun.TransactionTimeout, OSError) as exc:
        return f"refused {type(exc).__name__}"
    relayed = endpoint.get_extra_info("sockname")
    endpoint.close()
    await asyncio.sleep(0.2)  # let the REFRESH lifetime=0 (deallocation) go out
    return f"allocated {relayed[0]}:{relayed[1]}"


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.errors: list[str] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append(data)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(str(exc))


async def _relay_check(server: str, user: str, password: str, private: str) -> dict[str, Any]:
    """``before``/``after``: which directions A->B and B->A delivered; ``private_send``: what
    the ChannelBind to the private peer answered (``bound`` or the error)."""
    from aioice import turn

    ends = []
    for _ in range(2):
        ends.append(await turn.create_turn_endpoint(
            _Inbox, server_addr=_addr(server), username=user, password=password))
    (ta, pa), (tb, pb) = ends
    a_addr, b_addr = ta.get_extra_info("sockname"), tb.get_extra_info("sockname")

    async def exchange(tag: str) -> dict[str, bool]:
        ta.sendto(f"a2b-{tag}".encode(), b_addr)
        tb.sendto(f"b2a-{tag}".encode(), a_addr)
        await asyncio.sleep(0.5)
        return {"a_to_b": f"a2b-{tag}".encode() in pb.got,
                "b_to_a": f"b2a-{tag}".encode() in pa.got}

    out: dict[str, Any] = {"before": await exchange("1")}
    for _ in range(3):  # ICE retransmits its checks
        ta.sendto(b"check", _addr(private))
        await asyncio.sleep(0.2)
    out["private_send"] = pa.errors[0] if pa.errors else "bound"
    await asyncio.sleep(0.5)
    out["after"] = await exchange("2")
    for t in (ta, tb):
        t.close()
    await asyncio.sleep(0.3)
    return out


def _udp_echo(bind: str, seconds: float) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(_addr(bind))
        s.settimeout(0.2)
        print("ready", flush=True)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data, peer = s.recvfrom(2048)
            except TimeoutError:
                continue
            s.sendto(data, peer)


def _udp_probe(to: str, timeout_s: float = 1.0) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(_addr(to))
            s.send(b"probe")
            s.recv(2048)
            return "reply"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return f"error:{errno.errorcode.get(exc.errno or 0, exc.errno)}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nat_peer.py")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("room")
    p.add_argument("--url", required=True)
    p.add_argument("--admin-secret", default=os.environ.get("SIGNALING_ADMIN_SECRET"),
                   help="prefer $SIGNALING_ADMIN_SECRET (a secret may begin with '-')")
    p = sub.add_parser("wait-worker")
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--timeout", type=float, default=20.0)
    p = sub.add_parser("client")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--video", type=Path, required=True)
    p.add_argument("--pipelines", default="metadata,scenes")
    p = sub.add_parser("turn-alloc")
    p.add_argument("--server", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--transport", default="udp")
    p = sub.add_parser("relay-check")
    p.add_argument("--server", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--private", required=True)
    p = sub.add_parser("udp-echo")
    p.add_argument("--bind", required=True)
    p.add_argument("--seconds", type=float, default=10.0)
    p = sub.add_parser("udp-probe")
    p.add_argument("--to", required=True)
    args = parser.parse_args(argv)

    if args.cmd == "room":
        print(json.dumps(asyncio.run(_room(args.url, args.admin_secret))))
    elif args.cmd == "wait-worker":
        ok = asyncio.run(_wait_worker(args.url, args.token, args.name, args.timeout))
        print("online" if ok else "absent")
        return 0 if ok else 1
    elif args.cmd == "client":
        from rtc_annotator import logs

        logs.configure("INFO")
        out = asyncio.run(_client(args.config, args.video, args.pipelines.split(",")))
        print(json.dumps(out))
        return 0 if out["ok"] else 1
    elif args.cmd == "turn-alloc":
        print(asyncio.run(_turn_alloc(args.server, args.user, args.password, args.transport)))
    elif args.cmd == "relay-check":
        print(json.dumps(asyncio.run(
            _relay_check(args.server, args.user, args.password, args.private))))
    elif args.cmd == "udp-echo":
        with contextlib.suppress(KeyboardInterrupt):
            _udp_echo(args.bind, args.seconds)
    elif args.cmd == "udp-probe":
        print(_udp_probe(args.to))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
