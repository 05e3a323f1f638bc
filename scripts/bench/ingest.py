"""Ingest benchmark: N mixed envelopes through Store.ingest, against a naive baseline.

    python scripts/bench/ingest.py --db sqlite|postgres [--url URL] [--envelopes 200000]

The baseline, measured in the same run on a 5,000-envelope subset, validates each envelope and
writes it with one ORM add + commit (no projections). It runs in ten slices spread between the
ingest batches, so that both figures see the same host: on a shared machine the speed drifts
during a run (the same code has measured 26,700/s and 37,900/s within an hour), and a baseline
timed alone at the end sees another host than the ingest did. PostgreSQL needs --url or
RTC_ANNOTATOR_TEST_PG_URL (a fresh database is created and dropped). The last line is JSON:
{"db", "envelopes", "envelopes_per_s", "naive_per_s", "speedup"}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rtc_annotator.artifacts import coerce_envelope, make_envelope  # noqa: E402
from rtc_annotator.store import Store  # noqa: E402
from rtc_annotator.store.models import Artifact  # noqa: E402

NAIVE_SLICES = 10  # the baseline's subset is written in this many slices between batches
WORDS = "the gradient descent step size loss model data video frame scene dog cat".split()


def mixed(n: int, assets: int, seed: int = 1, order: str = "stream") -> list[dict[str, Any]]:
    """``n`` envelopes of four types over ``assets`` videos, one run per (video, type).

    ``order="stream"`` models the real workload: every run (a pipeline working through one
    video) emits its artifacts in time order, and the runs of many concurrent jobs interleave
    at random. ``order="random"`` gives every artifact a random time: the worst case for the
    time-keyed indexes, reported beside it.
    """
    rnd = random.Random(seed)
    asset_ids = [secrets.token_hex(32) for _ in range(assets)]
    kinds = [rnd.random() for _ in range(n)]
    types = ["object.detection" if k < 0.4 else "transcript.segment" if k < 0.7
             else "ocr.text" if k < 0.9 else "scene" for k in kinds]
    times = [rnd.randrange(0, 3_600_000) for _ in range(n)]
    if order == "stream":  # each run's times ascending, in the interleaved emission order
        per_run: dict[tuple[int, str], list[int]] = {}
        for i, atype in enumerate(types):
            per_run.setdefault((i % assets, atype), []).append(i)
        for idx in per_run.values():
            for i, t in zip(idx, sorted(times[i] for i in idx), strict=True):
                times[i] = t
    out = []
    for i in range(n):
        asset, atype, t = asset_ids[i % assets], types[i], times[i]
        if atype == "object.detection":
            payload: dict[str, Any] = {
                "label": rnd.choice(WORDS[-3:]), "confidence": rnd.random(),
                "box": {"x1": 0.1, "y1": 0.2, "x2": 0.5, "y2": 0.6}, "frame_pts_ms": t,
                "track_id": rnd.randrange(100)}
            end = t + 40
        elif atype == "transcript.segment":
            end = t + rnd.randrange(500, 5000)
            payload = {
                "text": " ".join(rnd.choices(WORDS, k=12)), "language": "en", "start_ms": t,
                "end_ms": end, "confidence": rnd.random(), "words": []}
        elif atype == "ocr.text":
            end = t + 40
            payload = {
                "text": " ".join(rnd.choices(WORDS, k=3)), "confidence": rnd.random(),
                "polygon": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.2], [0.1, 0.2]],
                "languages": ["en"]}
        else:
            end = t + rnd.randrange(1000, 20000)
            payload = {"index": i, "start_ms": t, "end_ms": end,
                       "boundary_score": rnd.random()}
        out.append(make_envelope(
            asset_id=asset, artifact_type=atype, schema_version=1, span_start_ms=t,
            span_end_ms=end, payload=payload, producer="bench", producer_version="1",
            model_profile="balanced", config_hash="c", input_hash="i",
            run_id=f"run-{asset[:8]}-{atype}", ordinal=i,
        ).model_dump(mode="json"))
    return out


async def fresh_pg(url: str) -> tuple[str, Any]:
    import asyncpg  # type: ignore[import-untyped]

    base = url.rsplit("/", 1)[0]
    name = "bench_" + secrets.token_hex(4)
    admin = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()

    return f"{base}/{name}", drop


@contextlib.asynccontextmanager
async def bench_store(db: str, pg_url: str | None) -> AsyncIterator[Store]:
    """An empty store for one benchmark run: a SQLite file in a temporary directory, or a new
    PostgreSQL database on ``pg_url``'s server (dropped afterwards)."""
    drop = None
    with tempfile.TemporaryDirectory() as tmp:
        if db == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
        else:
            if not pg_url:
                sys.exit("--url or RTC_ANNOTATOR_TEST_PG_URL is needed for postgres")
            url, drop = await fresh_pg(pg_url)
        store = await Store.open(url)
        try:
            yield store
        finally:
            await store.close()
            if drop is not None:
                await drop()


async def naive(store: Store, envs: list[dict[str, Any]]) -> float:
    """Seconds to write ``envs`` the naive way: validate, one ORM add + commit each."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    maker = async_sessionmaker(store.engine, expire_on_commit=False)
    start = time.perf_counter()
    async with maker() as session:
        for d in envs:
            e = coerce_envelope(d)
            session.add(Artifact(**e.model_dump()))
            await session.commit()
    return time.perf_counter() - start


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--url", default=os.environ.get("RTC_ANNOTATOR_TEST_PG_URL"))
    ap.add_argument("--envelopes", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--naive", type=int, default=5000)
    ap.add_argument("--order", choices=["stream", "random"], default="stream",
                    help="stream: each run's artifacts in time order, runs interleaved (what "
                         "workers send); random: random times (worst case for the indexes)")
    args = ap.parse_args()
    for name in ("envelopes", "batch", "naive"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    print(f"generating {args.envelopes} + {args.naive} envelopes", file=sys.stderr)
    envs = mixed(args.envelopes, assets=20, order=args.order)
    subset = mixed(args.naive, assets=2, seed=2, order=args.order)
    batches = [envs[i:i + args.batch] for i in range(0, len(envs), args.batch)]
    # the baseline runs in slices between the batches: a shared host's speed drifts within
    # a run, and both figures should see the same drift
    slices = max(1, min(NAIVE_SLICES, len(batches)))
    every = len(batches) / slices
    naive_at = {min(len(batches) - 1, int(every * (k + 0.5))): k for k in range(slices)}
    step = -(-len(subset) // slices)
    async with bench_store(args.db, args.url) as store:
        elapsed = naive_elapsed = 0.0
        new = 0
        for index, batch in enumerate(batches):
            start = time.perf_counter()
            new += await store.ingest(batch)
            elapsed += time.perf_counter() - start
            if index in naive_at:
                k = naive_at[index]
                naive_elapsed += await naive(store, subset[k * step:(k + 1) * step])
        assert new == len(envs), (new, len(envs))
        rate = len(envs) / elapsed
        print(f"ingest: {len(envs)} in {elapsed:.2f}s = {rate:,.0f}/s "
              f"(batch {args.batch}, order {args.order})", file=sys.stderr)
        again = time.perf_counter()
        assert await store.ingest(envs[: args.batch]) == 0
        print(f"re-ingest of one batch: {time.perf_counter() - again:.3f}s, 0 new",
              file=sys.stderr)
        naive_rate = len(subset) / naive_elapsed
        print(f"naive: {len(subset)} in {naive_elapsed:.2f}s = {naive_rate:,.0f}/s "
              f"({slices} slices between the batches)", file=sys.stderr)
    print(json.dumps({"db": args.db, "order": args.order, "envelopes": len(envs),
                      "envelopes_per_s": round(rate),
                      "naive_per_s": round(naive_rate),
                      "speedup": round(rate / naive_rate, 1)}))


if __name__ == "__main__":
    asyncio.run(main())
