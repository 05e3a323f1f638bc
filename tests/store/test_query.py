"""Jump and find on both backends, with hypothesis properties and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtc_annotator.query import QueryError, find, jump, parse
from rtc_annotator.store import Selection, Store
from tests.store.conftest import env, new_asset

PROPS = settings(max_examples=15, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])

# (start, duration, label) with few distinct starts so simultaneous artifacts are common.
spans = st.lists(st.tuples(st.sampled_from([0, 100, 200, 300]), st.integers(0, 3),
                           st.sampled_from(["dog", "cat"])), min_size=1, max_size=12)


@PROPS
@given(items=spans, from_ms=st.integers(-1, 400))
async def test_jump_walks_every_artifact_once_in_order(store: Store, items: list[tuple[int, int,
                                                                                      str]],
                                                       from_ms: int) -> None:
    asset = new_asset()
    envs = [env(asset, "object.detection", s, s + d, label=lab, ordinal=i)
            for i, (s, d, lab) in enumerate(items)]
    await store.ingest(envs)
    order = sorted(envs, key=lambda e: (e.span_start_ms, e.span_end_ms, e.artifact_id))
    # strict: the first answer starts after from_ms
    first = await jump(store, asset, "object", from_ms)
    after = [e for e in order if e.span_start_ms > from_ms]
    assert (first.artifact_id if first else None) == (after[0].artifact_id if after else None)
    before = [e for e in order if e.span_start_ms < from_ms]
    last = await jump(store, asset, "object", from_ms, "prev")
    assert (last.artifact_id if last else None) == (before[-1].artifact_id if before else None)
    # walking with the cursor visits every artifact exactly once, forwards and backwards
    seen, cur = [], await jump(store, asset, "object", -1)
    while cur is not None:
        seen.append(cur.artifact_id)
        cur = await jump(store, asset, "object", 0, cursor=cur.artifact_id)
    assert seen == [e.artifact_id for e in order]
    back, cur = [], await jump(store, asset, "object", 10_000, "prev")
    while cur is not None:
        back.append(cur.artifact_id)
        cur = await jump(store, asset, "object", 0, "prev", cursor=cur.artifact_id)
    assert back == seen[::-1]
    # label filter
    dogs = await jump(store, asset, "object", -1, labels=["dog"])
    want = [e for e in order if e.payload["label"] == "dog"]
    assert (dogs.artifact_id if dogs else None) == (want[0].artifact_id if want else None)


@PROPS
@given(starts=st.lists(st.integers(0, 50), min_size=1, max_size=10),
       hits=st.lists(st.booleans(), min_size=10, max_size=10), from_ms=st.integers(-1, 60),
       direction=st.sampled_from(["next", "prev"]))
async def test_find_direction(store: Store, starts: list[int], hits: list[bool], from_ms: int,
                              direction: str) -> None:
    asset = new_asset()
    envs = []
    for i, s in enumerate(starts):
        text = "the gradient descent step" if hits[i] else "nothing to see"
        kind = "transcript.segment" if i % 2 else "ocr.text"
        envs.append(env(asset, kind, s, s + 5, text=text, ordinal=i))
    await store.ingest(envs)
    matching = sorted((e for e, h in zip(envs, hits, strict=False) if h),
                      key=lambda e: (e.span_start_ms, e.span_end_ms, e.artifact_id))
    hit = await find(store, asset, "Gradient descent", from_ms, direction)
    if direction == "next":
        want = [e for e in matching if e.span_start_ms > from_ms][:1]
    else:
        want = [e for e in matching if e.span_start_ms < from_ms][-1:]
    assert (hit.artifact_id if hit else None) == (want[0].artifact_id if want else None)
    if hit is not None:
        assert "[gradient]" in hit.snippet.lower() or "[gradient descent]" in hit.snippet.lower()


async def test_jump_filters_and_selection(store: Store) -> None:
    asset = new_asset()
    await store.ingest([  # run-2 first: older, so the default selection picks run-1
        env(asset, "object.detection", 150, label="dog", run_id="run-2", ordinal=3),
        env(asset, "object.detection", 100, label="dog", confidence=0.3, ordinal=0),
        env(asset, "object.detection", 200, label="dog", confidence=0.9, ordinal=1),
        env(asset, "object.detection", 300, label="cat", confidence=0.95, ordinal=2),
        env(asset, "scene", 0, 1000, ordinal=4),
    ])
    hit = await jump(store, asset, "object", 0, labels=["dog"], min_confidence=0.5)
    assert hit is not None and hit.span_start_ms == 200
    hit = await jump(store, asset, "object", 0, labels=["cat", "dog"], min_confidence=0.5)
    assert hit is not None and hit.span_start_ms == 200
    pinned = Selection(mode="pinned", run_id="run-2")
    hit = await jump(store, asset, "object.detection", 0, selection=pinned)
    assert hit is not None and hit.run_id == "run-2"
    assert await jump(store, asset, "object", 400) is None
    with pytest.raises(QueryError):
        await jump(store, asset, "scene", 0, labels=["dog"])
    with pytest.raises(QueryError):
        await jump(store, asset, "scene", 0, min_confidence=0.5)
    with pytest.raises(QueryError):
        await jump(store, asset, "nonsense", 0)
    with pytest.raises(QueryError):
        await jump(store, asset, "object", 0, "sideways")
    with pytest.raises(QueryError):
        await jump(store, asset, "object", 0, cursor="not-an-artifact")


HOSTILE = [
    "'", '"', '""', "\\", "' OR 1=1 --", "'; DROP TABLE artifacts; --", "a & b | !c",
    "NEAR(a b)", "a* OR b", "-gradient", "col:gradient", "(((", "\x00", "%_%", "<->",
    "gradient\" OR \"x", "{}[]^$", "ünïcödé 数学", "SELECT * FROM text_segments",
]


@pytest.mark.parametrize("text", HOSTILE)
async def test_hostile_find_strings_are_queries_or_query_errors(store: Store, text: str) -> None:
    asset = new_asset()
    await store.ingest([env(asset, "transcript.segment", 0, text="gradient descent", ordinal=0),
                        env(asset, "ocr.text", 10, text="drop table select", ordinal=1)])
    try:
        await find(store, asset, text, -1)
    except QueryError as exc:
        assert exc.code == "QUERY_ERROR" and exc.hint
    assert await store.count_artifacts(asset) == 2


async def test_find_edge_cases(store: Store) -> None:
    asset = new_asset()
    await store.ingest([env(asset, "transcript.segment", 0, text="gradient descent", ordinal=0),
                        env(asset, "ocr.text", 10, text="DROP TABLE", ordinal=1)])
    for bad in ("", "   ", "!!!", "x" * 501, " ".join(["w"] * 17)):
        with pytest.raises(QueryError):
            await find(store, asset, bad)
    hit = await find(store, asset, "'; DROP TABLE; --", -1)
    assert hit is not None and hit.source == "ocr"
    assert await find(store, asset, '"descent gradient"', -1) is None
    assert (await find(store, asset, '"gradient descent"', -1)) is not None
    assert await find(store, asset, "gradient", -1, source="ocr") is None
    hit = await find(store, asset, "GRADIENT", -1, source="transcript")
    assert hit is not None and hit.text == "gradient descent"
    with pytest.raises(QueryError):
        await find(store, asset, "x", source="video")


def test_parser_reduces_everything_to_tokens() -> None:
    assert parse('say "Hello, World" e-mail') == [["say"], ["hello", "world"], ["e", "mail"]]
    assert parse("a_b") == [["a", "b"]]
