"""`rtc-annotator worker --render slurm|runai`: the rendered scripts, run for real with stand-in
`srun` / `apptainer` / `runai` executables on the PATH (no cluster here) that record their
arguments, and the committed examples re-rendered so they cannot drift.

Regenerate the examples with:
    rtc-annotator worker --render slurm --config config.example.toml \
        --remote-config /nfs/projects/rtc-annotator/worker.toml \
        -o scripts/slurm/rtc-annotator-worker.sbatch
    (and --render runai ... -o scripts/runai/submit-worker.sh)
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rtc_annotator.config import Settings, load_settings
from rtc_annotator.deploy.render import RenderError, render_worker, worker_job

ROOT = Path(__file__).resolve().parents[2]
REMOTE = "/nfs/projects/rtc-annotator/worker.toml"
EXAMPLES = {
    "slurm": ROOT / "scripts" / "slurm" / "rtc-annotator-worker.sbatch",
    "runai": ROOT / "scripts" / "runai" / "submit-worker.sh",
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    env.pop("SHARED_STORAGE_ROOT", None)
    env.update(extra)
    return env


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rtc_annotator", *args], capture_output=True,
                          text=True, env=clean_env(), timeout=60)


@pytest.fixture
def worker_settings(tmp_path: Path) -> Settings:
    cfg = tmp_path / "worker.toml"
    cfg.write_text(
        '[worker]\nname = "gpu node 7"\njob_slots = 4\nmodels_dir = "/shared/models"\n'
        'cache_dir = "/scratch/cache"\nshutdown_grace_s = 120.5\n'
        '[storage.vast]\nbase_path = "/mnt/vast"\n[storage.nfs]\nbase_path = "/nfs/projects"\n')
    return load_settings(cfg, env={})


def stub(bin_dir: Path, name: str) -> None:
    """An executable that appends its arguments, one per line, to $STUB_LOG."""
    path = bin_dir / name
    body = 'for a in "$@"; do echo "$a"; done'
    path.write_text(f'#!/bin/sh\n{{ echo "== {name}"; {body}; }} >> "$STUB_LOG"\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def run_script(script: str, tmp_path: Path, shell: str, **env: str) -> tuple[int, list[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("srun", "apptainer", "runai"):
        stub(bin_dir, name)
    path = tmp_path / "job.sh"
    path.write_text(script)
    log = tmp_path / "stub.log"
    log.unlink(missing_ok=True)
    full = clean_env(PATH=f"{bin_dir}:{os.environ['PATH']}", STUB_LOG=str(log), **env)
    proc = subprocess.run([shell, str(path)], capture_output=True, text=True, env=full,
                          timeout=30)
    lines = log.read_text().splitlines() if log.exists() else []
    return proc.returncode, lines, proc.stderr


# --------------------------------------------------------------------------- rendering


def test_job_from_settings(worker_settings: Settings) -> None:
    job = worker_job(worker_settings, config_path="/etc/rtc/worker.toml")
    assert job.gpus == 4
    assert job.name == "gpu node 7"
    assert job.mounts == ("/mnt/vast", "/nfs/projects", "/shared/models", "/scratch/cache")
    assert job.signal_s == 121 + 30
    default = worker_job(Settings(), config_path="/etc/rtc/worker.toml")
    assert default.name == "rtc-annotator-worker" and default.gpus == 1 and default.mounts == ()


def test_slurm_script(worker_settings: Settings) -> None:
    text = render_worker("slurm", worker_settings, config_path="/etc/rtc/worker.toml")
    assert "#SBATCH --job-name=gpu-node-7\n" in text
    assert "#SBATCH --gres=gpu:4\n" in text
    assert "#SBATCH --signal=TERM@151\n" in text
    assert "#SBATCH --requeue\n" in text
    assert "BINDS=/etc/rtc,/mnt/vast,/nfs/projects,/shared/models,/scratch/cache\n" in text


def test_runai_script(worker_settings: Settings) -> None:
    text = render_worker("runai", worker_settings, config_path="/etc/rtc/worker.toml",
                         image="registry.example.org/lab/rtc-annotator:1.0")
    assert "exec runai submit gpu-node-7 \\\n" in text
    assert "--gpu 4 \\\n" in text
    assert "--volume /shared/models:/shared/models:ro \\\n" in text
    assert "--volume /mnt/vast:/mnt/vast \\\n" in text
    assert "--volume /etc/rtc:/etc/rtc-annotator:ro \\\n" in text
    assert "--environment RTC_ANNOTATOR_CONFIG=/etc/rtc-annotator/worker.toml" in text
    assert 'IMAGE="${RTC_ANNOTATOR_IMAGE:-registry.example.org/lab/rtc-annotator:1.0}"' in text


def test_hostile_values_are_rejected_or_neutralised(tmp_path: Path) -> None:
    settings = Settings.model_validate({
        "worker": {"name": "evil\n#SBATCH --uid=0\nrm -rf /"},
        "storage": {"x": {"base_path": "/mnt/a b;touch /tmp/pwned"}}})
    text = render_worker("slurm", settings, config_path="/etc/rtc/worker.toml")
    assert "\nrm -rf" not in text and "#SBATCH --uid" not in text
    assert "BINDS='/etc/rtc,/mnt/a b;touch /tmp/pwned'\n" in text
    runai = render_worker("runai", settings, config_path="/etc/rtc/worker.toml")
    assert "--volume '/mnt/a b;touch /tmp/pwned:/mnt/a b;touch /tmp/pwned' \\\n" in runai
    with pytest.raises(RenderError):
        render_worker("slurm", settings, config_path="relative/worker.toml")
    with pytest.raises(RenderError):
        render_worker("runai", settings, config_path="/etc/w.toml", image='x"; rm -rf /')
    with pytest.raises(RenderError):
        render_worker("kubernetes", settings, config_path="/etc/w.toml")


# --------------------------------------------------------------------------- run them


def test_slurm_script_runs_the_worker_through_srun(worker_settings: Settings,
                                                   tmp_path: Path) -> None:
    text = render_worker("slurm", worker_settings, config_path="/etc/rtc/worker.toml")
    code, lines, err = run_script(text, tmp_path, "bash")
    assert code == 0, err
    assert lines == ["== srun", "--ntasks=1", "rtc-annotator", "worker", "--config",
                     "/etc/rtc/worker.toml"]
    code, lines, err = run_script(text, tmp_path, "bash", RTC_ANNOTATOR_SIF="/img/w.sif")
    assert code == 0, err
    assert lines == ["== srun", "--ntasks=1", "apptainer", "exec", "--nv", "--bind",
                     "/etc/rtc,/mnt/vast,/nfs/projects,/shared/models,/scratch/cache",
                     "/img/w.sif", "rtc-annotator", "worker", "--config",
                     "/etc/rtc/worker.toml"]


def test_runai_script_submits(worker_settings: Settings, tmp_path: Path) -> None:
    text = render_worker("runai", worker_settings, config_path="/etc/rtc/worker.toml")
    code, lines, err = run_script(text, tmp_path, "sh")
    assert code != 0 and "RUNAI_PROJECT" in err and lines == []
    code, lines, err = run_script(text, tmp_path, "sh", RUNAI_PROJECT="vision-lab")
    assert code == 0, err
    assert lines[:10] == ["== runai", "submit", "gpu-node-7", "--project", "vision-lab",
                          "--image", "rtc-annotator-worker:latest", "--gpu", "4", "--volume"]
    assert lines[-4:] == ["--command", "--", "rtc-annotator", "worker"]
    volumes = [lines[i + 1] for i, a in enumerate(lines) if a == "--volume"]
    assert volumes == ["/etc/rtc:/etc/rtc-annotator:ro", "/mnt/vast:/mnt/vast",
                       "/nfs/projects:/nfs/projects", "/shared/models:/shared/models:ro",
                       "/scratch/cache:/scratch/cache"]


# --------------------------------------------------------------------------- the command


@pytest.mark.parametrize("kind", ["slurm", "runai"])
def test_committed_examples_match_a_fresh_render(kind: str) -> None:
    r = cli("worker", "--render", kind, "--dry-run", "--config",
            str(ROOT / "config.example.toml"), "--remote-config", REMOTE)
    assert r.returncode == 0, r.stderr
    assert r.stdout == EXAMPLES[kind].read_text(), (
        f"{EXAMPLES[kind]} is stale: re-render it (see this module's docstring)")
    assert os.access(EXAMPLES[kind], os.X_OK)


def test_cli_writes_file(tmp_path: Path) -> None:
    cfg = tmp_path / "worker.toml"
    cfg.write_text('[worker]\njob_slots = 2\n')
    out = tmp_path / "job.sbatch"
    r = cli("worker", "--render", "slurm", "--config", str(cfg), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"wrote {out}\n"
    text = out.read_text()
    assert "#SBATCH --gres=gpu:2\n" in text
    assert f"export RTC_ANNOTATOR_CONFIG={cfg}\n" in text
    assert os.access(out, os.X_OK)


def test_cli_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "worker.toml"
    cfg.write_text("")
    r = cli("worker", "--render", "slurm", "--config", str(cfg))
    assert r.returncode == 2 and "-o FILE" in r.stderr
    r = cli("worker", "--render", "pbs", "--dry-run", "--config", str(cfg))
    assert r.returncode == 2 and "slurm or runai" in r.stderr
    r = cli("worker", "--render", "runai", "--dry-run", "--config", str(cfg),
            "--remote-config", "worker.toml")
    assert r.returncode == 2 and "RENDER_ERROR" in r.stderr and "absolute" in r.stderr
    r = cli("worker", "--dry-run", "--config", str(cfg))
    assert r.returncode == 2 and "--render" in r.stderr
    r = cli("worker", "--config", str(cfg))
    assert r.returncode == 2 and "token is not set" in r.stderr
    assert "Traceback" not in r.stderr
