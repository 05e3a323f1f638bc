"""[cluster], [pool] and [worker] idle_exit_s: validation with errors that say what to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtc_annotator.config import load_settings
from rtc_annotator.errors import ConfigError
from rtc_annotator.pool.service import load_templates, worker_env


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_and_env_overrides(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, ""), env={"RTC_ANNOTATOR_CLUSTER_GPUS": "0",
                                                "RTC_ANNOTATOR_WORKER_IDLE_EXIT_S": "30"})
    assert s.cluster.gpus == 0 and s.cluster.cpus == 4 and s.cluster.time_limit == "24:00:00"
    assert s.worker.idle_exit_s == 30
    assert s.pool.min_workers == 0 and s.pool.max_workers == 4 and s.pool.templates == []


@pytest.mark.parametrize(("text", "where"), [
    ('[cluster]\nmem = "lots"\n', "[cluster] mem"),
    ('[cluster]\ntime_limit = "1 day"\n', "[cluster] time_limit"),
    ('[cluster]\nsbatch_lines = ["--uid=0 --x"]\n', "[cluster] sbatch_lines"),
    ('[cluster]\ngpus = -1\n', "[cluster] gpus"),
    ('[pool]\nmax_workers = -2\n', "[pool] max_workers"),
    ('[worker]\nidle_exit_s = -1\n', "[worker] idle_exit_s"),
    ('[cluster]\npartiton = "gpu"\n', "did you mean 'partition'"),
])
def test_bad_values_name_section_and_key(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text), env={})
    assert where in f"{err.value.message} {err.value.hint}"


def test_pool_templates(tmp_path: Path) -> None:
    worker = write(tmp_path, '[worker]\njob_slots = 2\npipelines = ["metadata"]\n'
                   '[storage.vast]\nbase_path = "/mnt/vast"\n', "gpu.worker.toml")
    pool = load_settings(write(tmp_path, f'[pool]\ntemplates = ["{worker}", "{worker}"]\n'),
                         env={})
    (t1, _s1, p1), (t2, _s2, _p2) = load_templates(pool)
    assert (t1.name, t1.slots, t1.pipelines, t1.backends) == (
        "gpu-worker", 2, frozenset({"metadata"}), frozenset({"vast"}))
    assert t2.name == "gpu-worker-1" and p1 == worker
    with pytest.raises(ConfigError, match="templates is empty"):
        load_templates(load_settings(write(tmp_path, ""), env={}))
    bad = load_settings(write(tmp_path, f'[pool]\ntemplates = ["{worker}"]\nmin_workers = 3\n'
                              "max_workers = 2\n"), env={})
    with pytest.raises(ConfigError, match="min_workers"):
        load_templates(bad)


def test_worker_env_drops_the_pools_settings() -> None:
    env = worker_env({"PATH": "/bin", "RTC_ANNOTATOR_SIGNALING_TOKEN": "admin-secret-token",
                      "RTC_ANNOTATOR_CONFIG": "/home/a/pool.toml",
                      "RTC_ANNOTATOR_VENV": "/nfs/venv"}, 300)
    assert env == {"PATH": "/bin", "RTC_ANNOTATOR_VENV": "/nfs/venv",
                   "RTC_ANNOTATOR_WORKER_IDLE_EXIT_S": "300"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    return subprocess.run([sys.executable, "-m", "rtc_annotator", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_pool_cli_errors(tmp_path: Path) -> None:
    cfg = write(tmp_path, f'[pool]\nstate_dir = "{tmp_path / "state"}"\n')
    r = _cli("pool", "status", "--config", str(cfg))
    assert r.returncode == 1 and "POOL_NOT_FOUND" in r.stderr and "pool run" in r.stderr
    r = _cli("pool", "run", "--once", "--config", str(cfg))
    assert r.returncode == 2 and "templates is empty" in r.stderr
    assert "Traceback" not in r.stderr
