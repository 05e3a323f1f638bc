"""The peer connection cut during the input transfer and again during the artifact stream.

Real signaling server, real worker agent (child process per job), real aiortc links, real
SQLite stores. One job is cut twice:

1. the client closes its link while the video goes over the data channel, once the worker has
   at least 1 MiB verified on disk; the client reconnects (routed to the same worker by name)
   and ``attach``es: the transfer resumes from the worker's verified byte count;
2. the worker's end of the new link is closed right after the client stored batch 2 and before
   it acked it; the client reconnects and attaches with ``last_acked_seq=1``: batch 2 and the
   rest are replayed from the worker's outbox, batch 2 lands a second time and is skipped by
   the store (idempotent on ``artifact_id``).

The final store must equal, as a set of (artifact_id, payload), the store of an undisturbed run
of the same job on another worker, with every artifact exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.store import Store
from rtc_annotator.transport.client_session import ClientSession, file_sha256

from .conftest import (
    MakeSettings,
    StartAgent,
    connect_to,
    fast_link,
    stop_agent,
    store_contents,
)

PIPELINES: dict[str, dict[str, Any]] = {"metadata": {}, "scenes": {}}
JOB_ID = "fault-cut-0001"
MiB = 1024 * 1024
log = logging.getLogger(__name__)


async def end_session(sig: SignalingClient, session_id: str) -> None:
    """End the session unless the worker already did (after a cut it usually has)."""
    with contextlib.suppress(RtcAnnotatorError):
        await sig.end_session(session_id)


async def test_cut_during_transfer_and_during_stream(
    tmp_path: Path, noisy_video: Path, make_settings: MakeSettings, start_agent: StartAgent
) -> None:
    size = await asyncio.to_thread(os.path.getsize, noisy_video)
    assert size > 3 * MiB
    sha = await file_sha256(noisy_video)
    names = list(PIPELINES)
    client = make_settings("laptop", role="client")
    sig = SignalingClient.from_settings(client.signaling, name="laptop", reconnect_min_s=0.05)
    await sig.connect()
    store_base = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'base.sqlite3'}")
    store_cut = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'cut.sqlite3'}")
    try:
        # ---- undisturbed run of the same job id on worker w-base
        base_agent = await start_agent("w-base")
        sid, worker, link = await connect_to(sig, names)
        assert worker == "w-base"
        session = ClientSession(link, store_base.ingest)
        base = await session.submit(noisy_video, pipelines=PIPELINES, job_id=JOB_ID,
                                    transfer="rtc")
        await session.close()
        await link.close("done")
        await end_session(sig, sid)
        assert base.ok, base.error
        assert (base.transfer, base.sent_bytes) == ("rtc", size)
        expected = await store_contents(store_base, sha)
        assert len(expected) == base.envelopes == 5  # metadata + 4 scenes, one per batch
        await stop_agent(base_agent)

        # ---- the disturbed run on worker w-cut
        cut_agent = await start_agent("w-cut")
        partial = tmp_path / "w-cut" / "cache" / "files" / "partial" / f"{sha}.part"
        # A small bulk high-water mark keeps the sender close to what actually left the socket,
        # so "the worker has 1 MiB on disk" means the cut really falls mid-transfer.
        slow = dataclasses.replace(fast_link(), bulk_high_water=256 * 1024,
                                   bulk_low_threshold=128 * 1024)
        sid, worker, link = await connect_to(sig, names, options=slow)
        assert worker == "w-cut"
        cut: dict[str, int] = {}

        def cut_mid_transfer(offset: int, frame: bytes) -> bytes:
            if "transfer" not in cut and partial.exists() and partial.stat().st_size >= MiB:
                cut["transfer"] = offset
                asyncio.get_running_loop().create_task(link.close("fault: cut during transfer"))
            return frame

        new_rows: list[int] = []

        async def sink(envelopes: list[dict[str, Any]]) -> None:
            new_rows.append(await store_cut.ingest(envelopes))

        session = ClientSession(link, sink, chunk_hook=cut_mid_transfer)
        with pytest.raises(RtcAnnotatorError) as interrupted:
            await session.submit(noisy_video, pipelines=PIPELINES, job_id=JOB_ID,
                                 transfer="rtc")
        assert interrupted.value.code == "PEER_GONE"
        assert 0 < cut["transfer"] < size
        await session.close()
        await end_session(sig, sid)
        assert new_rows == []  # nothing ran yet: the worker still waits for its input

        # ---- reattach: the transfer resumes; then cut the stream after batch 2 is stored
        sid, worker, link2 = await connect_to(sig, names, worker="w-cut")
        resent: list[int] = []

        def note_offsets(offset: int, frame: bytes) -> bytes:
            resent.append(offset)
            return frame

        async def sink_then_cut(envelopes: list[dict[str, Any]]) -> None:
            await sink(envelopes)
            if len(new_rows) == 2:
                # the worker's end goes away before the client can ack batch 2
                for wl in list(cut_agent._links):
                    await wl.close("fault: cut during artifact stream")
                cut["stream_after_seq"] = 2

        session = ClientSession(link2, sink_then_cut, chunk_hook=note_offsets)
        with pytest.raises(RtcAnnotatorError) as interrupted:
            await session.attach(JOB_ID, last_acked_seq=0, input_path=noisy_video)
        assert interrupted.value.code == "PEER_GONE"
        assert cut["stream_after_seq"] == 2
        await session.close()
        await link2.close("cut")
        await end_session(sig, sid)
        # the resumed transfer started at the worker's verified byte count, not at 0
        resumed_from = resent[0]
        assert MiB <= resumed_from <= cut["transfer"] < size
        log.info("transfer cut at %d, resumed from %d of %d bytes", cut["transfer"],
                 resumed_from, size)

        # ---- reattach again: batch 2 (stored, never acked) and the rest are replayed
        sid, worker, link3 = await connect_to(sig, names, worker="w-cut")
        session = ClientSession(link3, sink)
        final = await session.attach(JOB_ID, last_acked_seq=1)
        await session.close()
        await link3.close("done")
        await end_session(sig, sid)
        assert final.ok, final.error
        assert final.batches == 4  # batches 2..5 replayed / streamed after the cut
        assert {k: v.artifacts for k, v in final.pipelines.items()} == {"metadata": 1,
                                                                        "scenes": 4}

        found = await store_contents(store_cut, sha)
        assert found == expected  # same ids, same payloads, each exactly once
        # batch 2 reached the store twice; the second time it added nothing
        assert sum(new_rows) == len(expected)
        assert len(new_rows) == 6 and new_rows[2] == 0
    finally:
        await store_base.close()
        await store_cut.close()
        await sig.close()
