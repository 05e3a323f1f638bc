"""TURN benchmark: connect time and upload throughput through coturn vs. a direct NATed path.

``sudo .venv/bin/python -m tests.nat.bench_turn [--mb 40] [--runs 2]`` (root: it builds the
namespace lab of :mod:`tests.nat.netlab`). Three paths, same lab, same file, same code:

* ``direct``: worker in ``pub`` (reachable), client behind ``natA``; no ICE servers;
* ``turn-udp`` / ``turn-tcp``: worker behind ``natB``, client behind ``natA``, both through
  coturn in ``pub`` (TURN over UDP / over TCP to the server).

Prints, per path, the median connect time (routed -> peer connected), the upload throughput of a
``--mb`` MB noise video sent with ``transfer=rtc``, and the ratio to ``direct``.
Everything runs on this machine's CPU: the figures say what the relay costs, not what a network
would give.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.nat import netlab
from tests.nat.harness import (
    PEER_RULES,
    TURN_PORT,
    Procs,
    client_config,
    run_client,
    start_coturn,
    start_room,
    start_worker,
)
from tests.nat.netlab import PUB_ADDR, NatLab


def make_video(path: Path, mb: int) -> Path:
    seconds = max(2, mb // 2)  # ~2.3 MB/s of 320x240 noise at crf 8
    subprocess.run([
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=s=320x240:r=25:d={seconds}",
        "-vf", "noise=alls=60:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "8",
        "-pix_fmt", "yuv420p", str(path)], check=True, timeout=300)
    return path


def measure(lab: NatLab, root: Path, path: str, video: Path, runs: int,
            secret: str) -> dict[str, float]:
    work = root / path
    work.mkdir()
    procs = Procs(work)
    try:
        if path == "direct":
            room = start_room(lab, procs, None, None, work)
            start_worker(lab, procs, room, work, ns="pub", host=PUB_ADDR)
        else:
            transport = path.split("-")[1]
            room = start_room(lab, procs, secret,
                              f"turn:{PUB_ADDR}:{TURN_PORT}?transport={transport}", work)
            start_worker(lab, procs, room, work)
        connects, rates = [], []
        for i in range(runs):
            # a fresh store and a renamed copy: the worker's cache must not short-cut the upload
            copy = work / f"v{i}.mp4"
            copy.write_bytes(video.read_bytes() + secrets.token_bytes(16))
            (work / f"r{i}").mkdir()
            r = run_client(lab, client_config(room, work / f"r{i}"), copy, timeout=300)
            out = json.loads(r.stdout)
            if not out.get("ok") or out.get("transfer") != "rtc":
                raise SystemExit(f"{path}: job failed: {r.stdout}\n{r.stderr[-2000:]}")
            connects.append(out["connect_s"])
            rates.append(out["upload_bytes"] / 1e6 / out["upload_s"])
        return {"connect_s": statistics.median(connects), "mb_s": statistics.median(rates)}
    finally:
        procs.stop_all()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_turn")
    parser.add_argument("--mb", type=int, default=40, help="approximate video size")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    reason = netlab.available()
    if reason:
        print(f"bench_turn: cannot run: {reason}", file=sys.stderr)
        return 2
    lab = NatLab()
    with tempfile.TemporaryDirectory(prefix="bench-turn-") as tmp:
        root = Path(tmp)
        video = make_video(root / "noise.mp4", args.mb)
        size_mb = video.stat().st_size / 1e6
        lab.up()
        turn = Procs(root)
        try:
            secret = secrets.token_urlsafe(24)
            start_coturn(lab, turn, "coturn", secret, port=TURN_PORT, min_port=49160,
                         extra=PEER_RULES)
            results = {p: measure(lab, root, p, video, args.runs, secret)
                       for p in ("direct", "turn-udp", "turn-tcp")}
        finally:
            turn.stop_all()
            lab.down()
    base = results["direct"]["mb_s"]
    print(f"file {size_mb:.1f} MB, median of {args.runs} run(s) per path")
    print(f"{'path':<10} {'connect':>9} {'upload':>11} {'vs direct':>10}")
    for path, res in results.items():
        print(f"{path:<10} {res['connect_s']:>8.2f}s {res['mb_s']:>7.1f} MB/s "
              f"{res['mb_s'] / base:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
