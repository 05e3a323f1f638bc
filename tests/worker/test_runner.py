"""JobRunner: real child processes running real pipelines on ffmpeg-made videos."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rtc_annotator.config import Settings, WorkerSettings
from rtc_annotator.worker.capabilities import worker_capabilities
from rtc_annotator.worker.runner import JobRunner, JobStatus, RunnerClosed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); treat it as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(worker=WorkerSettings(models_dir=tmp_path / "models"))


async def test_job_streams_outputs_and_reports_counts(make_video, settings: Settings) -> None:
    video = make_video(colors=("red", "blue", "green"), seconds_each=1.0)
    async with JobRunner(settings, slots=1, flush_s=0.0) as runner:
        handle = await runner.submit("job-1", video, ["metadata", "scenes"], "fast",
                                     {"scenes": {"threshold": 20}})
        batches = [b async for b in handle.outputs()]
        result = await handle.wait()
    types = [o.artifact_type for b in batches for o in b]
    assert types == ["video.metadata", "scene", "scene", "scene"]
    assert len(batches) >= 2  # metadata went out before the scenes were done
    assert result.status is JobStatus.COMPLETED and result.error is None
    assert result.counts == {"metadata": 1, "scenes": 3}
    assert set(result.timings) >= {"queued", "metadata", "scenes", "total"}
    assert handle.pid is not None and not _alive(handle.pid)


async def test_failing_pipeline_fails_the_job_with_one_envelope(
    not_a_video: Path, settings: Settings
) -> None:
    async with JobRunner(settings, slots=1) as runner:
        handle = await runner.submit("job-bad", not_a_video, ["scenes"], "fast", {})
        result = await handle.wait()
    assert result.status is JobStatus.FAILED
    assert result.error is not None and result.error.code == "VIDEO_ERROR"
    assert result.pipeline == "scenes" and "notes.mp4" in result.error.message
    assert "Traceback" not in result.error.message


async def test_missing_model_fails_with_a_hint(make_video, settings: Settings) -> None:
    video = make_video(colors=("red",), seconds_each=1.0)
    async with JobRunner(settings, slots=1) as runner:
        result = await (await runner.submit("job-m", video, ["transcript"], "fast", {})).wait()
    assert result.status is JobStatus.FAILED and result.error is not None
    assert result.error.code == "MODEL_NOT_AVAILABLE" and "models fetch" in result.error.hint


@pytest.mark.parametrize(
    ("pipelines", "profile", "options", "code"),
    [
        (["scenes", "faces"], "fast", {}, "UNKNOWN_PIPELINE"),
        (["scenes"], "ultra", {}, "OPTIONS_ERROR"),
        (["scenes"], "fast", {"scenes": {"treshold": 1}}, "OPTIONS_ERROR"),
        (["scenes"], "fast", {"ocr": {}}, "OPTIONS_ERROR"),
        ([], "fast", {}, "OPTIONS_ERROR"),
    ],
)
async def test_bad_requests_fail_before_any_process(
    make_video, settings: Settings, pipelines: list[str], profile: str, options: dict, code: str
) -> None:
    video = make_video(colors=("red",), seconds_each=1.0)
    async with JobRunner(settings, slots=1) as runner:
        handle = await runner.submit("job-x", video, pipelines, profile, options)
        result = await handle.wait()
        assert [b async for b in handle.outputs()] == []
    assert result.status is JobStatus.FAILED and result.error is not None
    assert result.error.code == code and handle.pid is None


async def test_fifo_queue_positions_and_cancel_queued(make_video, settings: Settings) -> None:
    video = make_video(colors=("red", "blue"), seconds_each=1.0)
    async with JobRunner(settings, slots=1) as runner:
        first = await runner.submit("a", video, ["scenes"], "fast", {})
        second = await runner.submit("b", video, ["scenes"], "fast", {})
        third = await runner.submit("c", video, ["metadata"], "fast", {})
        assert (first.queue_position, second.queue_position, third.queue_position) == (0, 1, 2)
        await second.cancel()
        assert second.status is JobStatus.CANCELLED and third.queue_position == 1
        assert (await first.wait()).status is JobStatus.COMPLETED
        assert (await third.wait()).status is JobStatus.COMPLETED
        assert second.pid is None


async def test_cancel_kills_the_child_within_5s(long_video: Path, settings: Settings) -> None:
    async with JobRunner(settings, slots=1, flush_s=0.0) as runner:
        handle = await runner.submit("long", long_video, ["metadata", "scenes"], "fast", {})
        async for batch in handle.outputs():
            assert batch[0].artifact_type == "video.metadata"
            break  # the child is now deep in the scenes pipeline
        pid = handle.pid
        assert pid is not None and _alive(pid)
        t0 = time.monotonic()
        await handle.cancel()
        gone_after = time.monotonic() - t0
        result = await handle.wait()
    assert not _alive(pid)
    assert gone_after < 5.0
    assert result.status is JobStatus.CANCELLED and result.error is None
    assert result.counts["scenes"] < 2  # it did not run to the end


async def test_closed_runner_refuses_jobs(make_video, settings: Settings) -> None:
    runner = JobRunner(settings, slots=1)
    await runner.close()
    with pytest.raises(RunnerClosed):
        await runner.submit("late", make_video(colors=("red",)), ["scenes"], "fast", {})


def test_capabilities(settings: Settings) -> None:
    caps = worker_capabilities(settings)
    assert set(caps) == {"name", "storage_backends", "pipelines", "unavailable", "gpus",
                         "job_slots", "load", "version", "models"}
    assert caps["models"] == []  # an empty models_dir: no model is held
    assert {"metadata", "scenes"} <= set(caps["pipelines"])
    assert "transcript" in caps["unavailable"] and caps["unavailable"]["transcript"]
    assert caps["job_slots"] >= 1 and caps["load"] == 0
    assert not set(caps["pipelines"]) & set(caps["unavailable"])
