"""Dispatch latency: from submit to the worker's executor starting, shared-path inputs.

Everything real on 127.0.0.1: the signaling server, the worker's registration and JobServer,
aiortc peer connections. The executor does no work (it records when it starts), so the figures
are the system's own overhead:

* cold: route through the signaling server + new peer connection + JOB_REQUEST, per job;
* warm: JOB_REQUEST on an already connected peer link;
* baseline (same run): a control-channel request/reply round trip to the worker's
  JobServer (ATTACH to an unknown job -> its refusal), on a connected link.

Last line JSON: {"jobs", "cold_p50_ms", "cold_p99_ms", "warm_p50_ms", "warm_p99_ms",
"control_rtt_p50_ms", "warm_vs_rtt_p50"}. Targets: cold p50 <= 250 ms, warm p50 <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rtc_annotator.config import IceSettings  # noqa: E402
from rtc_annotator.protocol import peer as proto  # noqa: E402
from rtc_annotator.signaling_client import SignalingClient  # noqa: E402
from rtc_annotator.storage import StorageBackend, StorageConfig  # noqa: E402
from rtc_annotator.transport.client_session import ClientSession  # noqa: E402
from rtc_annotator.transport.filetransfer import FileCache  # noqa: E402
from rtc_annotator.transport.outbox import Outbox  # noqa: E402
from rtc_annotator.transport.peer import CallbackSignaler, LinkOptions, PeerLink  # noqa: E402
from rtc_annotator.transport.worker_session import JobServer  # noqa: E402
from signaling.app import SignalingServer  # noqa: E402
from signaling.config import ServerConfig  # noqa: E402

SECRET = "bench-secret"
OPTS = LinkOptions(ice=IceSettings(servers=[], host_addresses=["127.0.0.1"]))


def note(text: str) -> None:
    print(f"[dispatch] {text}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(jobs: int, tmp: Path) -> dict[str, Any]:
    share = tmp / "share" / "u"
    share.mkdir(parents=True)
    video = share / "clip.mp4"
    video.write_bytes(b"\0" * 4 * 1024 * 1024)
    storage = StorageConfig.of([StorageBackend(name="bench", base_path=tmp / "share")])

    server = SignalingServer(ServerConfig(state_path=tmp / "state.sqlite3", admin_secret=SECRET,
                                          host="127.0.0.1", port=0, rate_per_s=10_000.0,
                                          rate_burst=10_000.0))
    await server.start()
    root = SignalingClient(server.url, admin_secret=SECRET, reconnect=False)
    await root.connect()
    admin_token = (await root.request("create_room", name="bench"))["token"]
    await root.close()
    admin = SignalingClient(server.url, token=admin_token, reconnect=False)
    await admin.connect()
    tokens = {r: (await admin.request("issue_token", role=r, ttl_s=600))["token"]
              for r in ("worker", "client")}
    await admin.close()

    started: dict[str, float] = {}

    async def executor(job: proto.JobRequest, path: Path, emit: Any, progress: Any) -> dict:
        started[job.job_id] = time.perf_counter()
        return {"scenes": {"artifacts": 0, "seconds": 0.0}}

    jobserver = JobServer(storage=storage, executor=executor,
                          cache=FileCache(tmp / "cache", max_bytes=1 << 30, min_free_bytes=0),
                          outbox=Outbox(tmp / "outbox"), job_slots=4)
    wsig = SignalingClient(server.url, token=tokens["worker"], name="w1")
    await wsig.connect()
    await wsig.register_worker({"name": "w1", "storage_backends": [{"name": "bench",
                                "type": "nfs"}], "pipelines": ["scenes"], "job_slots": 4})

    async def serve_session(ev: dict[str, Any]) -> None:
        sid = ev["session_id"]
        link = await PeerLink.connect(
            CallbackSignaler(lambda d: wsig.send_signal(sid, d), lambda: wsig.next_signal(sid)),
            offer=False, role="worker", name="w1", options=OPTS)
        try:
            await jobserver.serve(link)
        finally:
            await link.close()

    async def worker_loop() -> None:
        async for ev in wsig.events():
            if ev.get("type") == "session_started":
                asyncio.create_task(serve_session(ev))

    wtask = asyncio.create_task(worker_loop())
    csig = SignalingClient(server.url, token=tokens["client"], name="bench-client")
    await csig.connect()

    async def sink(envs: list[dict[str, Any]]) -> None:
        return None

    async def connect() -> tuple[str, PeerLink]:
        routed = await csig.route(pipelines=["scenes"], required_storage="bench")
        sid = routed["session_id"]
        link = await PeerLink.connect(
            CallbackSignaler(lambda d: csig.send_signal(sid, d), lambda: csig.next_signal(sid)),
            offer=True, role="client", name="bench-client", options=OPTS)
        return sid, link

    note("worker registered; cold jobs")
    cold: list[float] = []
    setup: list[float] = []
    for i in range(jobs):
        t0 = time.perf_counter()
        sid, link = await connect()
        setup.append(time.perf_counter() - t0)
        session = ClientSession(link, sink, storage=storage)
        job_id = f"cold{i:04d}"
        res = await session.submit(video, pipelines={"scenes": {}}, job_id=job_id)
        assert res.ok and res.transfer == "shared", res
        cold.append((started[job_id] - t0) * 1000)
        await session.close()
        await link.close()
        await csig.end_session(sid)

    note("warm jobs")
    sid, link = await connect()
    session = ClientSession(link, sink, storage=storage)
    warm: list[float] = []
    for i in range(jobs):
        job_id = f"warm{i:04d}"
        t0 = time.perf_counter()
        res = await session.submit(video, pipelines={"scenes": {}}, job_id=job_id)
        assert res.ok, res
        warm.append((started[job_id] - t0) * 1000)
    await session.close()
    # baseline: control-channel round trips on the same kind of link (raw PING/PONG)
    note("control round-trip baseline")
    ping: list[float] = []
    sid2, link2 = await connect()
    for i in range(jobs):
        t0 = time.perf_counter()
        await link2.send(proto.Attach(job_id=f"none{i:04d}", last_acked_seq=0))
        while True:
            msg = await link2.recv()
            if getattr(msg, "job_id", None) == f"none{i:04d}":
                break
        ping.append((time.perf_counter() - t0) * 1000)
    for lk, s in ((link, sid), (link2, sid2)):
        await lk.close()
        await csig.end_session(s)
    await csig.close()
    wtask.cancel()
    await wsig.close()
    await server.stop()
    return {
        "jobs": jobs,
        "cold_p50_ms": round(statistics.median(cold), 2),
        "cold_p99_ms": round(pct(cold, 0.99), 2),
        "connect_p50_ms": round(statistics.median(setup) * 1000, 2),
        "warm_p50_ms": round(statistics.median(warm), 2),
        "warm_p99_ms": round(pct(warm, 0.99), 2),
        "control_rtt_p50_ms": round(statistics.median(ping), 2),
        "warm_vs_rtt_p50": round(statistics.median(warm) / statistics.median(ping), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(asyncio.wait_for(run(args.jobs, Path(tmp)), 300))
    print(f"cold (route + connect + submit): p50 {result['cold_p50_ms']} ms, "
          f"p99 {result['cold_p99_ms']} ms")
    print(f"warm (reused link): p50 {result['warm_p50_ms']} ms; "
          f"control round trip p50 {result['control_rtt_p50_ms']} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
