"""A pipeline from another package, end to end: advertised by a real worker, routed by the
signaling server, run in the job's child process next to built-ins, stored and exported by the
client; and a plugin that raises, over the same path, without losing the others' results."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from rtc_annotator import plugins
from rtc_annotator.artifacts.schemas import registry as schemas
from rtc_annotator.client.submit import submit_video
from rtc_annotator.exporters import export
from rtc_annotator.pipelines.registry import DEFAULT_REGISTRY
from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.store import Store
from tests.conftest import IN_CI
from tests.pipelines.plugin_fixtures import DIST, install_fake_plugin

from .conftest import MakeSettings, StartWorker, fast_link

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def example_plugin() -> None:
    try:
        metadata.version("rtc-annotator-brightness")
    except metadata.PackageNotFoundError:
        reason = ("the example plugin is not installed: run make install or .venv/bin/pip "
                  "install --no-deps -e examples/rtc-brightness")
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


async def test_plugin_pipeline_through_a_worker(
    tmp_path: Path, make_video, make_settings: MakeSettings, start_worker: StartWorker,
    signaling_server, room_tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a broken plugin next to the example one, known to the worker like an installed package
    install_fake_plugin(tmp_path / "site", monkeypatch)
    monkeypatch.setitem(DEFAULT_REGISTRY.entries, "fakeraiser", "fakeplug_pkg.pipelines:Raiser")
    video = make_video(colors=("black", "white", "black"), seconds_each=1.0)
    await start_worker("gpu-plug")
    admin = SignalingClient(signaling_server.url, token=room_tokens["admin"], reconnect=False)
    await admin.connect()
    try:
        worker = next(w for w in await admin.list_workers() if w["name"] == "gpu-plug")
    finally:
        await admin.close()
    assert {"brightness", "fakeraiser", "scenes"} <= set(worker["pipelines"])

    client = make_settings("laptop", role="client")
    store = await Store.open(client.database.url)
    try:
        ok = await submit_video(client, video, store=store,
                                pipelines=["metadata", "scenes", "brightness"],
                                options={"brightness": {"sample_every_ms": 1000}},
                                link_options=fast_link())
        assert ok.ok, ok.error
        assert ok.pipelines["brightness"]["artifacts"] == 3
        rows = await store.artifacts(ok.asset_id, artifact_type="frame.brightness")
        assert [(r.span_start_ms, r.payload["dark"]) for r in rows] == [
            (0, True), (1000, False), (2000, True)]
        assert all(r.producer == "brightness" and r.producer_version == "0.1.0" for r in rows)
        assert (await store.get_run(f"{ok.job_id}-brightness"))["status"] == "completed"
        assert len(await store.artifacts(ok.asset_id, artifact_type="scene")) == 3
        data = b"".join([c async for c in export(store, ok.asset_id, "jsonl")])
        types = [json.loads(line)["artifact_type"] for line in data.decode().splitlines()]
        assert types.count("frame.brightness") == 3

        bad = await submit_video(client, video, store=store,
                                 pipelines=["metadata", "brightness", "fakeraiser"],
                                 link_options=fast_link())
        assert not bad.ok and bad.error is not None
        assert bad.error.code == "PIPELINE_ERROR"
        assert "fakeraiser" in bad.error.message and DIST in bad.error.message
        assert "sensor exploded" in bad.error.message
        assert f"pip install -U {DIST}" in bad.error.hint
        # the other pipelines' results of that job arrived and were stored
        kept = await store.artifacts(bad.asset_id, run_id=f"{bad.job_id}-brightness")
        assert len(kept) == 3
        assert len(await store.artifacts(bad.asset_id, run_id=f"{bad.job_id}-metadata")) == 1
        raised = await store.artifacts(bad.asset_id, run_id=f"{bad.job_id}-fakeraiser")
        assert [r.payload["value"] for r in raised] == [0.5]
    finally:
        await store.close()
        plugins.refresh()
        schemas.load_plugins(again=True)
