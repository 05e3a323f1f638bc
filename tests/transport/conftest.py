"""Fixtures for transport tests: real aiortc peers on 127.0.0.1, an in-process signaling stand-in.

Only the signaling relay is replaced (by two asyncio queues); both peer connections, ICE, DTLS,
SCTP and the data channels are real aiortc.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rtc_annotator.config import IceSettings
from rtc_annotator.protocol import peer as proto
from rtc_annotator.storage import StorageBackend, StorageConfig
from rtc_annotator.transport.client_session import ClientSession, Sink
from rtc_annotator.transport.filetransfer import FileCache
from rtc_annotator.transport.outbox import Outbox
from rtc_annotator.transport.peer import LinkOptions, PeerLink, signaler_pair
from rtc_annotator.transport.worker_session import Emit, Executor, JobServer, ProgressCb

LOCAL_ICE = IceSettings(servers=[], host_addresses=["127.0.0.1"])


def make_file(path: Path, size: int, seed: int = 1) -> Path:
    """Deterministic pseudo-random bytes (not compressible, not all zeros)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    with open(path, "wb") as fh:
        left = size
        i = 0
        while left > 0:
            piece = hashlib.sha256(block[:64] + i.to_bytes(8, "big")).digest() + block[32:]
            fh.write(piece[: min(left, len(piece))])
            left -= len(piece)
            i += 1
    return path


class ToyExecutor:
    """Stands in for the pipeline runner (another module): emits envelopes derived from the
    input file's bytes, so results prove which file the worker read."""

    def __init__(self, batches: int = 3, per_batch: int = 2) -> None:
        self.batches = batches
        self.per_batch = per_batch
        self.paths: list[Path] = []
        self.gate: asyncio.Event | None = None
        self.gate_after = 0
        self.started = asyncio.Event()

    async def __call__(self, job: proto.JobRequest, input_path: Path, emit: Emit,
                       progress: ProgressCb) -> dict[str, Any]:
        self.paths.append(input_path)
        self.started.set()
        digest = await asyncio.to_thread(lambda: hashlib.sha256(input_path.read_bytes()).hexdigest())
        for b in range(self.batches):
            if self.gate is not None and b == self.gate_after:
                await self.gate.wait()
            envs = [{"artifact_id": f"{digest[:16]}-{b}-{i}", "artifact_type": "scene",
                     "input_hash": digest, "span_start_ms": b * 1000 + i}
                    for i in range(self.per_batch)]
            await emit(envs)
            await progress("scenes", (b + 1) / self.batches)
        return {"scenes": {"artifacts": self.batches * self.per_batch, "seconds": 0.01}}


class RecordingSink:
    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.calls = 0

    async def __call__(self, envelopes: list[dict[str, Any]]) -> None:
        self.calls += 1
        self.envelopes.extend(envelopes)

    def ids(self) -> list[str]:
        return [e["artifact_id"] for e in self.envelopes]


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.links: list[PeerLink] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.sessions: list[ClientSession] = []
        self.n = 0

    def storage(self, root: Path, name: str = "vast") -> StorageConfig:
        root.mkdir(parents=True, exist_ok=True)
        return StorageConfig.of([StorageBackend(name=name, base_path=root)])

    def server(self, executor: Executor, storage: StorageConfig | None = None,
               max_bytes: int = 1 << 40, job_slots: int = 1, same_dirs: bool = False) -> JobServer:
        if not same_dirs:
            self.n += 1
        return JobServer(storage=storage or StorageConfig(),
                         executor=executor,
                         cache=FileCache(self.tmp / f"worker{self.n}-cache", max_bytes=max_bytes,
                                         min_free_bytes=0),
                         outbox=Outbox(self.tmp / f"worker{self.n}-outbox"),
                         job_slots=job_slots)

    async def connect(self, server: JobServer | None = None, *, dead_after_s: float = 10.0,
                      heartbeat_s: float = 1.0, **opts: Any) -> tuple[PeerLink, PeerLink]:
        a, b = signaler_pair()
        o = LinkOptions(ice=LOCAL_ICE, dead_after_s=dead_after_s, heartbeat_s=heartbeat_s,
                        connect_timeout_s=15, **opts)
        client, worker = await asyncio.gather(
            PeerLink.connect(a, offer=True, role="client", name="laptop", options=o),
            PeerLink.connect(b, offer=False, role="worker", name="gpu1", options=o),
        )
        self.links += [client, worker]
        if server is not None:
            self.tasks.append(asyncio.create_task(server.serve(worker)))
        return client, worker

    def client(self, link: PeerLink, sink: Sink, **kw: Any) -> ClientSession:
        session = ClientSession(link, sink, **kw)
        self.sessions.append(session)
        return session

    async def aclose(self) -> None:
        for s in self.sessions:
            await s.close()
        for link in self.links:
            await link.close("test over")
        for t in self.tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        await e.aclose()


__all__ = ["Env", "RecordingSink", "ToyExecutor", "make_file", "os"]
