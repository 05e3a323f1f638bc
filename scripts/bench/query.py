"""Query benchmark: jump and find latency over a large store.

    python scripts/bench/query.py --db postgres [--url URL] [--artifacts 1000000] [--videos 100]

Loads mixed artifacts (objects, transcript, OCR, scenes) spread over the videos through
Store.ingest, then times 1,000 random jumps (object with label, transcript, scene) and 1,000
random finds (one or two words, both directions) through the query functions, and prints the
PostgreSQL/SQLite query plans of one jump and one find so index use can be checked. The last
line is JSON: {"artifacts", "jump_p50_ms", "jump_p99_ms", "find_p50_ms", "find_p99_ms"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa  # noqa: E402
from ingest import WORDS, bench_store, mixed  # noqa: E402

from rtc_annotator.query import find, jump  # noqa: E402
from rtc_annotator.store import Store  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    ap.add_argument("--url", default=os.environ.get("RTC_ANNOTATOR_TEST_PG_URL"))
    ap.add_argument("--artifacts", type=int, default=1_000_000)
    ap.add_argument("--videos", type=int, default=100)
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args()
    async with bench_store(args.db, args.url) as store:
        t0 = time.perf_counter()
        chunk = 50_000
        for i in range(0, args.artifacts, chunk):
            envs = mixed(min(chunk, args.artifacts - i), args.videos, seed=i)
            for j in range(0, len(envs), 5000):
                await store.ingest(envs[j:j + 5000])
            print(f"loaded {i + len(envs)}", file=sys.stderr)
        print(f"load: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        if store.dialect == "postgresql":
            async with store.engine.connect() as conn:
                await conn.execute(sa.text("ANALYZE"))
        assets = [a["asset_id"] for a in await store.list_assets()]
        rnd = random.Random(7)
        jumps: list[float] = []
        finds: list[float] = []
        for _ in range(args.queries):
            asset, t = rnd.choice(assets), rnd.randrange(0, 3_600_000)
            kind = rnd.choice(["object", "transcript", "scene"])
            labels = [rnd.choice(WORDS[-3:])] if kind == "object" else None
            d = rnd.choice(["next", "prev"])
            s = time.perf_counter()
            await jump(store, asset, kind, t, d, labels=labels)
            jumps.append((time.perf_counter() - s) * 1000)
            words = " ".join(rnd.sample(WORDS, rnd.choice([1, 2])))
            s = time.perf_counter()
            await find(store, asset, words, t, d)
            finds.append((time.perf_counter() - s) * 1000)
        await explain(store, assets[0])
    print(f"jump mean {statistics.mean(jumps):.2f} ms, find mean {statistics.mean(finds):.2f} ms",
          file=sys.stderr)
    print(json.dumps({"artifacts": args.artifacts, "jump_p50_ms": round(pct(jumps, .5), 2),
                      "jump_p99_ms": round(pct(jumps, .99), 2),
                      "find_p50_ms": round(pct(finds, .5), 2),
                      "find_p99_ms": round(pct(finds, .99), 2)}))


async def explain(store: Store, asset: str) -> None:
    """Print the plans of the core jump and find statements."""
    run = await store.selected_run(asset, "object.detection")
    run_t = await store.selected_run(asset, "transcript.segment")
    pg = store.dialect == "postgresql"
    prefix = "EXPLAIN" if pg else "EXPLAIN QUERY PLAN"
    jump_sql = ("SELECT artifact_id FROM object_labels WHERE asset_id = :a AND run_id = :r "
                "AND label IN ('dog') AND start_ms > 1000 ORDER BY start_ms, end_ms, artifact_id "
                "LIMIT 1")
    if pg:
        find_sql = ("SELECT ts.artifact_id FROM text_segments ts WHERE ts.asset_id = :a AND "
                    "ts.run_id = :r2 AND ts.start_ms > 1000 AND ts.tsv @@ websearch_to_tsquery("
                    "'simple', '\"gradient\"') ORDER BY ts.start_ms LIMIT 1")
    else:
        find_sql = ("SELECT ts.artifact_id FROM text_segments_fts CROSS JOIN text_segments ts ON "
                    "ts.id = text_segments_fts.rowid WHERE text_segments_fts MATCH '\"gradient\"' "
                    "AND ts.asset_id = :a AND ts.run_id = :r2 AND ts.start_ms > 1000 "
                    "ORDER BY ts.start_ms LIMIT 1")
    async with store.engine.connect() as conn:
        for name, sql in (("jump", jump_sql), ("find", find_sql)):
            rows = (await conn.execute(sa.text(f"{prefix} {sql}"),
                                       {"a": asset, "r": run, "r2": run_t})).all()
            print(f"-- plan of {name}:", file=sys.stderr)
            for row in rows:
                print("   " + " | ".join(str(x) for x in row), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
