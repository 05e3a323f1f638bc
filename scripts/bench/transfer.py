# ruff: noqa: ASYNC110, ASYNC230, ASYNC240 - the baselines are deliberately naive loops
"""Benchmark: one file sent four ways between two processes on 127.0.0.1.

* ``ours``: rtc_annotator.transport (sha256 of the file before the offer, CRC per chunk,
  sha256 while receiving, written to the worker cache, verified, committed).
* ``bare_aiortc``: the same aiortc link, 64 KiB chunks read from disk, backpressure with
  ``bufferedAmountLowThreshold`` / ``bufferedamountlow``, nothing hashed or written.
* ``polling``: 64 KiB chunks, ``sleep(0.1)`` while ``bufferedAmount > 16 MiB``.
* ``tcp``: asyncio streams, written to disk on the receiver.

Sender and receiver are separate processes (each gets a core, each reports its peak RSS). The
signaling relay is a line-per-JSON TCP socket between the two. Last line of output is JSON::

    {"file_mib": N, "ours_mb_s": x, "bare_aiortc_mb_s": x, "polling_mb_s": x, "tcp_mb_s": x,
     "ours_vs_bare": x, "setup_ms": x, "peak_rss_mb_sender": x, "peak_rss_mb_receiver": x}

Usage: ``python scripts/bench/transfer.py [--mib 64]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHUNK = 64 * 1024
METHODS = ("ours", "bare_aiortc", "polling", "tcp")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class TcpSignaler:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: dict[str, Any]) -> None:
        self.writer.write(json.dumps(data).encode() + b"\n")
        await self.writer.drain()

    async def recv(self) -> dict[str, Any]:
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("signaling socket closed")
        return dict(json.loads(line))


async def _connect_signaling(role: str, port: int) -> TcpSignaler:
    if role == "receiver":
        fut: asyncio.Future[TcpSignaler] = asyncio.get_running_loop().create_future()

        async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if not fut.done():
                fut.set_result(TcpSignaler(r, w))

        server = await asyncio.start_server(on_conn, "127.0.0.1", port)
        sig = await fut
        server.close()
        return sig
    for _ in range(200):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            return TcpSignaler(r, w)
        except OSError:
            await asyncio.sleep(0.05)
    raise ConnectionError("receiver did not come up")


async def _link(role: str, port: int) -> tuple[Any, float]:
    from rtc_annotator.config import IceSettings
    from rtc_annotator.transport.peer import LinkOptions, PeerLink

    sig = await _connect_signaling(role, port)
    opts = LinkOptions(ice=IceSettings(host_addresses=["127.0.0.1"]), connect_timeout_s=30)
    t0 = time.perf_counter()
    link = await PeerLink.connect(sig, offer=role == "sender",
                                  role="client" if role == "sender" else "worker", options=opts)
    return link, (time.perf_counter() - t0) * 1000


async def run_sender(method: str, port: int, path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    if method == "tcp":
        r, w = await _open_tcp(port)
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK):
                w.write(block)
                await w.drain()
        w.write_eof()
        await r.readline()
        elapsed = time.perf_counter() - t0
        w.close()
        return {"elapsed_s": elapsed, "rss_mb": peak_rss_mb()}

    from rtc_annotator.protocol import peer as proto
    from rtc_annotator.transport.client_session import file_sha256
    from rtc_annotator.transport.filetransfer import send_file

    link, setup_ms = await _link("sender", port)
    t0 = time.perf_counter()
    if method == "ours":
        statuses: asyncio.Queue[proto.TransferStatus] = asyncio.Queue()

        async def route() -> None:
            while True:
                msg = await link.recv()
                if isinstance(msg, proto.TransferStatus):
                    statuses.put_nowait(msg)

        router = asyncio.create_task(route())
        sha = await file_sha256(path)
        result = await send_file(link, path, job_id="bench", sha256=sha, transfer_no=1,
                                 statuses=statuses)
        assert result.sent_bytes == size, result
        router.cancel()
    else:
        ch = link.bulk
        low = asyncio.Event()
        ch.bufferedAmountLowThreshold = 1024 * 1024
        ch.on("bufferedamountlow", low.set)
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK):
                if method == "bare_aiortc":
                    if ch.bufferedAmount > ch.bufferedAmountLowThreshold:
                        low.clear()
                        await low.wait()
                else:
                    while ch.bufferedAmount > 16 * 1024 * 1024:
                        await asyncio.sleep(0.1)
                ch.send(block)
        await link.recv()  # the receiver's "all bytes here"
    elapsed = time.perf_counter() - t0
    await link.close()
    return {"elapsed_s": elapsed, "setup_ms": setup_ms, "rss_mb": peak_rss_mb()}


async def _open_tcp(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    for _ in range(200):
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
    raise ConnectionError("tcp receiver did not come up")


async def run_receiver(method: str, port: int, size: int, workdir: Path) -> dict[str, Any]:
    if method == "tcp":
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with open(workdir / "tcp.bin", "wb") as fh:
                while block := await r.read(CHUNK):
                    fh.write(block)
            w.write(b"ok\n")
            await w.drain()
            w.close()
            done.set_result(None)

        server = await asyncio.start_server(on_conn, "127.0.0.1", port)
        await done
        server.close()
        return {"rss_mb": peak_rss_mb()}

    from rtc_annotator.protocol import peer as proto
    from rtc_annotator.storage import StorageConfig
    from rtc_annotator.transport.filetransfer import FileCache
    from rtc_annotator.transport.outbox import Outbox
    from rtc_annotator.transport.worker_session import JobServer

    link, _ = await _link("receiver", port)
    if method == "ours":
        async def never(*_: Any) -> dict[str, Any]:
            return {}

        server = JobServer(storage=StorageConfig(), executor=never,
                           cache=FileCache(workdir / "cache", max_bytes=1 << 40),
                           outbox=Outbox(workdir / "outbox"))
        await server.serve(link)
    else:
        got = 0

        def on_bulk(frame: bytes) -> None:
            nonlocal got
            got += len(frame)
            if got >= size:
                asyncio.get_running_loop().create_task(
                    link.send(proto.Progress(job_id="bench", stage="done", fraction=1.0)))

        link.set_bulk_handler(on_bulk)
        await link.closed.wait()
    return {"rss_mb": peak_rss_mb()}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_file(path: Path, mib: int) -> None:
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as fh:
        for i in range(mib):
            fh.write(block[i % 7 :] + block[: i % 7])


def _child(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)


def run_one(method: str, path: Path, workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    port = _free_port()
    size = path.stat().st_size
    recv = _child(["--role", "receiver", "--method", method, "--port", str(port),
                   "--size", str(size), "--workdir", str(workdir)])
    time.sleep(0.3)
    send = _child(["--role", "sender", "--method", method, "--port", str(port),
                   "--file", str(path)])
    s_out, _ = send.communicate(timeout=900)
    r_out, _ = recv.communicate(timeout=60)
    return json.loads(s_out.strip().splitlines()[-1]), json.loads(r_out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64, help="file size in MiB (issue asks 256)")
    ap.add_argument("--role", choices=["sender", "receiver"])
    ap.add_argument("--method", choices=METHODS)
    ap.add_argument("--port", type=int)
    ap.add_argument("--file", type=Path)
    ap.add_argument("--size", type=int)
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()
    if args.role == "sender":
        print(json.dumps(asyncio.run(run_sender(args.method, args.port, args.file))))
        return
    if args.role == "receiver":
        out = asyncio.run(run_receiver(args.method, args.port, args.size, args.workdir))
        print(json.dumps(out))
        return

    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        tmpdir = Path(tmp)
        path = tmpdir / "input.bin"
        _make_file(path, args.mib)
        size_mb = path.stat().st_size / 1e6
        rates: dict[str, float] = {}
        setup_ms = 0.0
        rss_s = rss_r = 0.0
        for method in METHODS:
            workdir = tmpdir / method
            workdir.mkdir()
            s, r = run_one(method, path, workdir)
            rates[method] = size_mb / s["elapsed_s"]
            print(f"{method:12s} {rates[method]:8.1f} MB/s  {s['elapsed_s']:6.2f} s  "
                  f"rss sender {s['rss_mb']:.0f} MB receiver {r['rss_mb']:.0f} MB")
            if method == "ours":
                setup_ms = s["setup_ms"]
                rss_s, rss_r = s["rss_mb"], r["rss_mb"]
                with contextlib.suppress(StopIteration):
                    got = next((workdir / "cache" / "blobs").rglob("input.bin"))
                    assert got.stat().st_size == path.stat().st_size
        print(json.dumps({
            "file_mib": args.mib,
            "ours_mb_s": round(rates["ours"], 1),
            "bare_aiortc_mb_s": round(rates["bare_aiortc"], 1),
            "polling_mb_s": round(rates["polling"], 1),
            "tcp_mb_s": round(rates["tcp"], 1),
            "ours_vs_bare": round(rates["ours"] / rates["bare_aiortc"], 2),
            "setup_ms": round(setup_ms, 1),
            "peak_rss_mb_sender": round(rss_s, 1),
            "peak_rss_mb_receiver": round(rss_r, 1),
        }))


if __name__ == "__main__":
    main()
