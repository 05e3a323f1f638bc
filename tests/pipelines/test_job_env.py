"""No side effect of the model libraries leaks into jobs: the availability probe imports none
of them, a scenes job never loads torch, and ultralytics' thread changes (OMP_NUM_THREADS=1,
torch threads min(8, cores - 1), OpenCV threads 0) do not reach the job's other pipelines;
``[worker] threads_per_job`` sets the threads of a job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rtc_annotator.config import Settings
from rtc_annotator.pipelines.registry import BUILTIN, Registry
from rtc_annotator.worker.runner import JobRunner

pytestmark = pytest.mark.timeout(600)
PROBE = "tests.pipelines.envprobe:EnvProbe"
REGISTRY = Registry({**BUILTIN, "envprobe": PROBE, "envprobe2": PROBE})  # a job runs each once


async def _reports(settings: Settings, video: Path, pipelines: list[str],
                   options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    async with JobRunner(settings, slots=1, registry=REGISTRY) as runner:
        handle = await runner.submit("env", video, pipelines, "fast", options or {})
        async for _ in handle.outputs():
            pass
        result = await handle.wait()
    assert result.status.value == "completed", result.error
    return [result.stats[name] for name in pipelines if name.startswith("envprobe")]


async def test_a_scenes_job_never_loads_torch(make_video, tmp_path: Path) -> None:
    settings = Settings.model_validate({"worker": {"cache_dir": str(tmp_path / "c")}})
    (report,) = await _reports(settings, make_video(), ["scenes", "envprobe"])
    assert report["modules"] == []
    assert report["omp"] == os.environ.get("OMP_NUM_THREADS")


async def test_objects_leaves_the_threads_of_the_job_as_configured(
        make_video, real: SimpleNamespace) -> None:
    """The job's pipelines run side by side; objects loads ultralytics in its prepare step,
    before any of them starts, and puts back what the import changed: a pipeline running
    beside it sees the configured threads, not ultralytics' choices."""
    settings = Settings.model_validate({
        "worker": {"models_dir": str(real.models_dir), "cache_dir": str(real.cache),
                   "threads_per_job": 2},
        "profiles": {"fast": {"objects": "people"}}})
    video = make_video(colors=("red",), seconds_each=1.0)
    (alone,) = await _reports(settings, video, ["envprobe"])
    (beside,) = await _reports(settings, video, ["objects", "envprobe"],
                               {"objects": {"sample_every_ms": 1000}})
    assert alone["modules"] == [] and alone["omp"] == "2"
    assert "ultralytics" in beside["modules"]
    assert beside["omp"] == "2"  # not ultralytics' 1
    assert beside["torch_threads"] == 2  # not ultralytics' min(8, cores - 1)
    assert beside["cv2_threads"] == alone["cv2_threads"]  # not ultralytics' 0


def test_the_probe_imports_no_model_library(real: SimpleNamespace) -> None:
    script = (
        "import json, os, sys\n"
        "from rtc_annotator.config import Settings\n"
        "from rtc_annotator.worker.capabilities import worker_capabilities\n"
        "s = Settings.model_validate({'worker': {'models_dir': sys.argv[1], "
        "'cache_dir': sys.argv[2]}, 'profiles': {'fast': {'objects': 'people'}}})\n"
        "caps = worker_capabilities(s)\n"
        "print(json.dumps({'modules': [m for m in ('torch', 'ultralytics', 'easyocr', "
        "'faster_whisper', 'ctranslate2') if m in sys.modules], "
        "'omp': os.environ.get('OMP_NUM_THREADS'), 'caps': caps}))\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    r = subprocess.run([sys.executable, "-c", script, str(real.models_dir), str(real.cache)],
                       capture_output=True, text=True, timeout=300, env=env, check=True)
    out = json.loads(r.stdout)
    assert out["modules"] == [] and out["omp"] is None
    assert {"transcript", "objects", "ocr"} <= set(out["caps"]["pipelines"])
    models = {m["name"]: m for m in out["caps"]["models"]}
    assert set(models) == {"tiny.en", "people", "en"}
    assert models["people"]["classes"] == ["Normal", "Fall"]
