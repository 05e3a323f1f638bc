"""Load test of the signaling server on 127.0.0.1.

Starts ``python -m signaling`` in a child process, registers N workers (varied backends,
pipelines, GPUs, slots) and M clients, then sends R route requests at a paced rate (open loop:
latency is not inflated by the benchmark's own back-to-back sending); each routed session is
ended right away so slots come back. Route latency is measured at the client (request sent ->
``routed`` received). As a baseline from the same run it also times ``heartbeat`` round trips
(the cheapest request), so the routing cost shows as a ratio.

Last line: JSON ``{"workers", "clients", "requests", "route_p50_ms", "route_p99_ms",
"server_rss_mb", ...}``.

    .venv/bin/python scripts/bench/signaling_load.py [--workers 1000 --clients 100
        --requests 5000 --rate 250 --max-seconds 240]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rtc_annotator.protocol.signaling import SignalingError
from rtc_annotator.signaling_client import SignalingClient

SECRET = "bench-secret"
BACKENDS = ["vast", "nfs", "lustre", "scratch"]
PIPELINES = ["metadata", "scenes", "transcript", "objects", "ocr"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def worker_caps(i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "name": f"w{i:04d}",
        "storage_backends": [{"name": b, "type": "nfs"}
                             for b in rng.sample(BACKENDS, rng.randint(0, 2))],
        "pipelines": ["metadata", "scenes", *rng.sample(PIPELINES[2:], rng.randint(0, 3))],
        "gpus": [{"name": "GPU", "memory_mb": rng.choice([0, 16000, 24000, 80000])}],
        "job_slots": rng.randint(1, 4),
        "load": 0,
        "version": "bench",
    }


def spawn_server(state: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:  # a file, not a pipe: the server never blocks on it
        return subprocess.Popen(
            [sys.executable, "-m", "signaling", "--port", "0", "--state", str(state),
             "--rate", "100000", "--burst", "100000", "--log-level", "WARNING"],
            stderr=log_file,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "SIGNALING_ADMIN_SECRET": SECRET})


async def start_server(state: Path) -> tuple[subprocess.Popen[bytes], str]:
    log_path = state.with_suffix(".log")
    proc = spawn_server(state, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"(ws://\S+)", log_path.read_text(errors="replace"))
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.05)
    proc.kill()
    raise SystemExit(f"server did not start: {log_path.read_text(errors='replace')[-2000:]}")


async def server_route_histogram(url: str) -> dict[str, int]:
    import aiohttp

    http = url.replace("ws://", "http://").rsplit("/", 1)[0]
    async with aiohttp.ClientSession() as session, session.get(http + "/metrics") as resp:
        text = await resp.text()
    out = {}
    for m in re.finditer(r'signaling_route_latency_ms_bucket\{le="([^"]+)"\} (\d+)', text):
        out[m.group(1)] = int(m.group(2))
    return out


async def connect_all(clients: list[SignalingClient], batch: int = 50) -> None:
    for i in range(0, len(clients), batch):
        await asyncio.gather(*(c.connect() for c in clients[i:i + batch]))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(7)
    tmp = Path(tempfile.mkdtemp(prefix="signaling-bench-"))
    proc, url = await start_server(tmp / "state.sqlite3")
    everyone: list[SignalingClient] = []
    try:
        root = SignalingClient(url, admin_secret=SECRET)
        everyone.append(root)
        await root.connect()
        admin_token = (await root.request("create_room", name="bench"))["token"]
        admin = SignalingClient(url, token=admin_token)
        everyone.append(admin)
        await admin.connect()
        wtok = (await admin.request("issue_token", role="worker"))["token"]
        ctok = (await admin.request("issue_token", role="client"))["token"]

        t0 = time.perf_counter()
        workers = [SignalingClient(url, token=wtok, heartbeat_s=5.0)
                   for _ in range(args.workers)]
        everyone += workers
        await connect_all(workers)
        for i in range(0, len(workers), 50):
            await asyncio.gather(*(w.register_worker(worker_caps(i + j, rng))
                                   for j, w in enumerate(workers[i:i + 50])))
        clients = [SignalingClient(url, token=ctok, name=f"c{i:03d}", heartbeat_s=5.0)
                   for i in range(args.clients)]
        everyone += clients
        await connect_all(clients)
        setup_s = time.perf_counter() - t0
        print(f"setup: {args.workers} workers + {args.clients} clients in {setup_s:.1f} s, "
              f"server rss {rss_mb(proc.pid):.0f} MB", file=sys.stderr)

        # baseline: heartbeat round trips, same connections, same pacing
        hb: list[float] = []
        for c in clients[:20]:
            for _ in range(5):
                s = time.perf_counter()
                await c.request("heartbeat")
                hb.append((time.perf_counter() - s) * 1000)

        lat: list[float] = []
        errors: dict[str, int] = {}
        per_client = args.requests // args.clients
        interval = args.clients / args.rate  # seconds between one client's requests

        async def client_loop(c: SignalingClient) -> None:
            crng = random.Random(c.name)
            await asyncio.sleep(crng.uniform(0, interval))
            next_at = time.perf_counter()
            for _ in range(per_client):
                req: dict[str, Any] = {"pipelines": crng.sample(["metadata", "scenes", "transcript"],
                                                crng.randint(1, 2)),
                       "required_storage": crng.choice([*BACKENDS, None]),
                       "min_gpu_memory_mb": crng.choice([0, 0, 16000])}
                s = time.perf_counter()
                try:
                    routed = await c.route(**req)
                    lat.append((time.perf_counter() - s) * 1000)
                    await c.end_session(routed["session_id"])
                except SignalingError as exc:
                    errors[exc.code] = errors.get(exc.code, 0) + 1
                next_at += interval * crng.uniform(0.5, 1.5)
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)

        t1 = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*(client_loop(c) for c in clients)),
                                   args.max_seconds)
            bounded = False
        except TimeoutError:
            bounded = True
        elapsed = time.perf_counter() - t1
        server_rss = rss_mb(proc.pid)
        server_side = await server_route_histogram(url)
        print(f"server-side route handling (ms bucket: count): {server_side}", file=sys.stderr)
        p50, p99 = pct(lat, 0.50), pct(lat, 0.99)
        hb50 = statistics.median(hb)
        print(f"routes: {len(lat)} in {elapsed:.1f} s ({len(lat) / elapsed:.0f}/s), "
              f"errors {errors}, stopped by time bound: {bounded}", file=sys.stderr)
        print(f"route p50 {p50:.2f} ms, p99 {p99:.2f} ms; heartbeat p50 {hb50:.2f} ms "
              f"(route/heartbeat p50 ratio {p50 / hb50:.2f})", file=sys.stderr)
        return {"workers": args.workers, "clients": args.clients, "requests": len(lat),
                "route_p50_ms": round(p50, 2), "route_p99_ms": round(p99, 2),
                "server_rss_mb": round(server_rss, 1),
                "heartbeat_p50_ms": round(hb50, 2),
                "route_vs_heartbeat_p50": round(p50 / hb50, 2),
                "offered_rate_per_s": args.rate, "errors": sum(errors.values()),
                "time_bounded": bounded}
    finally:
        for i in range(0, len(everyone), 100):
            await asyncio.gather(*(c.close() for c in everyone[i:i + 100]),
                                 return_exceptions=True)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=250.0, help="route requests per second, total")
    ap.add_argument("--max-seconds", type=float, default=240.0,
                    help="bound on the routing phase")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
