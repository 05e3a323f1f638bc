"""Pipelines and payload schemas from other packages (entry points), and what goes wrong.

The example plugin (examples/rtc-brightness, installed by `make install`) is the good case; a
fake distribution written per test (plugin_fixtures.py) brings the bad ones: a pipeline that
raises, one whose payloads fail its schema, one that does not import, and others.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from rtc_annotator import plugins
from rtc_annotator.artifacts.envelope import make_envelope
from rtc_annotator.artifacts.schemas import SchemaError
from rtc_annotator.artifacts.schemas import registry as schemas
from rtc_annotator.config import Settings, WorkerSettings
from rtc_annotator.exporters import export
from rtc_annotator.pipelines.base import PipelineUnavailable
from rtc_annotator.pipelines.registry import DEFAULT_REGISTRY, Registry
from rtc_annotator.store import Store
from rtc_annotator.worker.capabilities import worker_capabilities
from rtc_annotator.worker.runner import JobRunner, JobStatus
from tests.conftest import IN_CI
from tests.pipelines.plugin_fixtures import DIST, VERSION, install_fake_plugin

EXAMPLE_DIST = "rtc-annotator-brightness"


@pytest.fixture()
def example_plugin() -> str:
    """The example plugin must be installed (make install does it)."""
    try:
        version = metadata.version(EXAMPLE_DIST)
    except metadata.PackageNotFoundError:
        reason = (f"{EXAMPLE_DIST} is not installed: run make install or "
                  ".venv/bin/pip install --no-deps -e examples/rtc-brightness")
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return version


@pytest.fixture()
def fake_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = install_fake_plugin(tmp_path / "site", monkeypatch)
    yield root
    monkeypatch.undo()
    plugins.refresh()
    schemas.load_plugins(again=True)


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(worker=WorkerSettings(models_dir=tmp_path / "models"))


# ------------------------------------------------------------------ discovery


def test_example_plugin_is_advertised_like_a_builtin(example_plugin: str,
                                                      settings: Settings) -> None:
    assert DEFAULT_REGISTRY.entries["brightness"] == "rtc_brightness.pipeline:BrightnessPipeline"
    row = {s.name: s for s in DEFAULT_REGISTRY.statuses(settings)}["brightness"]
    assert row.ok and row.artifact_types == ("frame.brightness",)
    assert row.reason == f"plugin from {EXAMPLE_DIST} {example_plugin}"
    assert ("frame.brightness", 1) in schemas.known()
    assert schemas.origin("frame.brightness", 1) == f"{EXAMPLE_DIST} {example_plugin}"
    caps = worker_capabilities(settings)
    assert "brightness" in caps["pipelines"]


def test_names_that_are_taken_or_malformed_are_skipped(fake_plugin: Path) -> None:
    reg = Registry()
    assert reg.entries["scenes"] == "rtc_annotator.pipelines.scenes:ScenesPipeline"
    assert "Bad-Name" not in reg.entries
    assert reg.entries["fakegood"] == "fakeplug_pkg.pipelines:Good"


def test_broken_plugins_are_unavailable_with_the_package_and_the_fix(
    fake_plugin: Path, settings: Settings
) -> None:
    rows = {s.name: s for s in Registry().statuses(settings)}
    assert rows["fakegood"].ok and rows["fakegood"].reason == f"plugin from {DIST} {VERSION}"
    expect = {
        "fakenoimport": "does not load: ModuleNotFoundError",
        "fakemisnamed": "calls itself 'somethingelse'",
        "fakenoschema": "produces fake.unregistered without a registered payload schema",
        "fakeprobe": "raised OSError: cannot read /dev/sensor",
    }
    for name, text in expect.items():
        row = rows[name]
        assert not row.ok, name
        assert text in row.reason, (name, row.reason)
        assert f"{DIST}" in row.reason and name in row.reason, row.reason
    assert f"pip install -U {DIST}" in rows["fakenoimport"].reason
    assert "rtc_annotator.schemas" in rows["fakenoschema"].reason
    # a worker never advertises them, and says why
    caps = worker_capabilities(settings, Registry())
    assert "fakegood" in caps["pipelines"]
    assert set(expect) <= set(caps["unavailable"])
    with pytest.raises(PipelineUnavailable) as err:
        Registry().get("fakenoimport")
    assert err.value.code == "PIPELINE_NOT_AVAILABLE"
    assert "fakeplug_pkg.missing" in err.value.message


def test_plugin_schemas_validate_every_write_and_bad_ones_are_named(fake_plugin: Path) -> None:
    assert ("fake.value", 1) in schemas.known()
    assert schemas.origin("fake.value", 1) == f"{DIST} {VERSION}"
    assert schemas.validate("fake.value", 1, {"value": 0.25}) == {"value": 0.25, "note": ""}
    for bad, where in (({"value": 2.0}, "value"), ({"value": 0.1, "extra": 1}, "extra"),
                       ({"value": float("nan")}, "value"),
                       ({"value": 0.1, "note": "a\x00b"}, "NUL")):
        with pytest.raises(SchemaError) as err:
            schemas.validate("fake.value", 1, bad)
        assert where in err.value.message
    # a schema that is not a PluginPayload, or does not import, is refused and named
    with pytest.raises(SchemaError) as err:
        schemas.validate("fake.nothing", 1, {})
    assert "fake.nothing" in err.value.hint and "PluginPayload" in err.value.hint
    assert f"{DIST} {VERSION}" in err.value.hint and "fake.gone" in err.value.hint


async def test_plugin_artifacts_store_and_export(example_plugin: str, tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        asset = "a" * 64
        payload = {"frame_pts_ms": 0, "mean": 0.5, "contrast": 0.1, "dark": False}
        env = make_envelope(asset_id=asset, artifact_type="frame.brightness", schema_version=1,
                            span_start_ms=0, span_end_ms=1000, payload=payload,
                            producer="brightness", producer_version="0.1.0",
                            model_profile="fast", config_hash="c", input_hash=asset,
                            run_id="r-brightness", ordinal=0)
        assert await store.ingest([env]) == 1
        # the store's own ingest validates plugin payloads too
        bad = {**env.model_dump(mode="json"), "artifact_id": "x" * 32,
               "payload": {**payload, "mean": 3.0}}
        with pytest.raises(SchemaError) as err:
            await store.ingest([bad])
        assert "frame.brightness" in err.value.message and "mean" in err.value.message
        lines = [json.loads(line) async for line in _lines(store, asset, "jsonl")]
        assert [line["artifact_type"] for line in lines] == ["frame.brightness"]
        vtt = b"".join([c async for c in export(store, asset, "vtt")]).decode()
        assert "not included: frame.brightness" in vtt
        coco = json.loads(b"".join([c async for c in export(store, asset, "coco")]))
        assert coco["info"]["skipped_artifact_types"] == ["frame.brightness"]
        assert coco["annotations"] == []
    finally:
        await store.close()


async def _lines(store: Store, asset: str, fmt: str):  # type: ignore[no-untyped-def]
    data = b"".join([c async for c in export(store, asset, fmt)])
    for line in data.decode().splitlines():
        yield line


# ------------------------------------------------------------------ jobs


async def test_plugin_failures_name_pipeline_package_and_fix_and_spare_the_others(
    fake_plugin: Path, make_video, settings: Settings
) -> None:
    video = make_video(colors=("red", "blue"), seconds_each=1.0)
    names = ["metadata", "fakegood", "fakeraiser", "fakebad", "fakenoimport", "fakeundeclared"]
    async with JobRunner(settings, slots=1, registry=Registry(), flush_s=0.0) as runner:
        handle = await runner.submit("job-plug", video, names, "fast", {})
        outputs = [o for b in [b async for b in handle.outputs()] for o in b]
        result = await handle.wait()
    assert result.status is JobStatus.FAILED and result.error is not None
    by_type: dict[str, int] = {}
    for o in outputs:
        by_type[o.artifact_type] = by_type.get(o.artifact_type, 0) + 1
    # the good pipelines kept every result; the bad ones only what they yielded before failing
    assert by_type.pop("video.metadata") == 1
    assert by_type == {"fake.value": 3 + 1 + 1}
    assert result.counts["metadata"] == 1 and result.counts["fakegood"] == 3
    assert {"metadata", "fakegood"} <= set(result.timings)
    assert not {"fakeraiser", "fakebad", "fakenoimport", "fakeundeclared"} & set(result.timings)
    assert result.pipeline in {"fakeraiser", "fakebad", "fakenoimport", "fakeundeclared"}
    assert DIST in result.error.message and result.pipeline in result.error.message


@pytest.mark.parametrize(("name", "code", "message", "hint"), [
    ("fakeraiser", "PIPELINE_ERROR", "RuntimeError: sensor exploded", f"pip install -U {DIST}"),
    ("fakebad", "SCHEMA_ERROR", "invalid fake.value v1 payload: value", f"fix {DIST}"),
    ("fakenoimport", "PIPELINE_NOT_AVAILABLE", "does not load", f"pip install -U {DIST}"),
    ("fakeundeclared", "SCHEMA_ERROR", "yielded a 'scene' output but declares only fake.value",
     f"fix {DIST}"),
])
async def test_each_plugin_failure_alone(fake_plugin: Path, make_video, settings: Settings,
                                         name: str, code: str, message: str, hint: str) -> None:
    video = make_video(colors=("red",), seconds_each=1.0)
    async with JobRunner(settings, slots=1, registry=Registry()) as runner:
        result = await (await runner.submit("j-" + name, video, ["metadata", name], "fast",
                                            {})).wait()
    assert result.status is JobStatus.FAILED and result.error is not None
    assert result.pipeline == name and result.counts["metadata"] == 1
    err = result.error
    assert err.code == code
    assert message in err.message and name in err.message
    assert f"{DIST} {VERSION}" in err.message
    assert hint in err.hint
    assert "Traceback" not in err.message


async def test_example_plugin_shares_frames_with_scenes(example_plugin: str, make_video,
                                                        settings: Settings) -> None:
    video = make_video(colors=("black", "white", "gray"), seconds_each=1.0)
    async with JobRunner(settings, slots=1) as runner:
        handle = await runner.submit("job-b", video, ["scenes", "brightness"], "fast",
                                     {"brightness": {"sample_every_ms": 500}})
        outputs = [o for b in [b async for b in handle.outputs()] for o in b]
        result = await handle.wait()
    assert result.status is JobStatus.COMPLETED, result.error
    bright = sorted((o for o in outputs if o.artifact_type == "frame.brightness"),
                    key=lambda o: o.span_start_ms)
    assert [o.span_start_ms for o in bright] == [0, 520, 1000, 1520, 2000, 2520]
    assert [o.span_end_ms for o in bright] == [520, 1000, 1520, 2000, 2520, 3000]
    means = [o.payload["mean"] for o in bright]
    assert means[0] < 0.1 and means[2] > 0.9 and 0.4 < means[4] < 0.6
    assert [o.payload["dark"] for o in bright] == [True, True, False, False, False, False]
    assert result.counts["scenes"] == 3
