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
import signal
import stat
import subprocess
import sys
import time
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
    assert job.gpus == 4 and job.cpus == 4 and job.time_limit == "24:00:00"
    assert job.name == "gpu node 7" and job.prefix == "gpu-node-7"
    assert job.mounts == ("/mnt/vast", "/nfs/projects", "/shared/models", "/scratch/cache")
    assert job.signal_s == 121 + 30
    default = worker_job(Settings(), config_path="/etc/rtc/worker.toml")
    assert default.name == "rtc-annotator-worker" and default.prefix == "rtc"
    assert default.gpus == 1 and default.mounts == ()


def test_slurm_script(worker_settings: Settings) -> None:
    text = render_worker("slurm", worker_settings, config_path="/etc/rtc/worker.toml")
    assert "#SBATCH --job-name=gpu-node-7\n" in text
    assert "#SBATCH --gres=gpu:4\n" in text
    assert "#SBATCH --cpus-per-task=4\n#SBATCH --time=24:00:00\n" in text
    assert "#SBATCH --signal=B:TERM@151\n" in text
    assert "#SBATCH --requeue\n" in text
    assert "--partition" not in text and "--account" not in text and "--mem" not in text
    assert "BINDS=/etc/rtc,/mnt/vast,/nfs/projects,/shared/models,/scratch/cache\n" in text
    assert 'name="gpu-node-7-${SLURMD_NODENAME:-$(hostname -s)}-${SLURM_JOB_ID:-$$}"' in text
    assert "rtc-annotator --log-level INFO worker" in text
    assert "\ngrace=121\n" in text


def test_slurm_resources_from_cluster_section() -> None:
    settings = Settings.model_validate({"cluster": {
        "gpus": 0, "cpus": 2, "mem": "16G", "time_limit": "2-00:00:00", "partition": "cpu",
        "account": "lab", "qos": "low", "sbatch_lines": ["--constraint=avx512", "--exclusive"],
        "log_dir": "/nfs/logs/"}})
    text = render_worker("slurm", settings, config_path="/etc/rtc/worker.toml")
    assert "--gres" not in text
    for line in ("--cpus-per-task=2", "--mem=16G", "--time=2-00:00:00", "--partition=cpu",
                 "--account=lab", "--qos=low", "--constraint=avx512", "--exclusive",
                 "--output=/nfs/logs/rtc-annotator-worker-%j.log"):
        assert f"#SBATCH {line}\n" in text, line
    with pytest.raises(ValueError):
        Settings.model_validate({"cluster": {"sbatch_lines": ["--x=1\nrm -rf /"]}})
    with pytest.raises(ValueError):
        Settings.model_validate({"cluster": {"partition": "a b"}})


def test_runai_script(worker_settings: Settings) -> None:
    text = render_worker("runai", worker_settings, config_path="/etc/rtc/worker.toml",
                         image="registry.example.org/lab/rtc-annotator:1.0")
    assert "exec runai submit \\\n    --job-name-prefix gpu-node-7 \\\n" in text
    assert "--gpu 4 \\\n    --cpu 4 \\\n" in text and "--memory" not in text
    assert "--volume /shared/models:/shared/models:ro \\\n" in text
    assert "--volume /mnt/vast:/mnt/vast \\\n" in text
    assert "--volume /etc/rtc:/etc/rtc-annotator:ro \\\n" in text
    assert "--environment RTC_ANNOTATOR_CONFIG=/etc/rtc-annotator/worker.toml" in text
    assert 'IMAGE="${RTC_ANNOTATOR_IMAGE:-registry.example.org/lab/rtc-annotator:1.0}"' in text
    cpu = render_worker("runai", Settings.model_validate({"cluster": {"gpus": 0, "mem": "8G"}}),
                        config_path="/etc/rtc/worker.toml")
    assert "--gpu" not in cpu and "--memory 8G \\\n" in cpu


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


def fake_worker(bin_dir: Path, *, kill_wait: str = "30") -> None:
    """``rtc-annotator`` that records its arguments and environment, then waits for SIGTERM;
    ``scontrol`` that reports ``KillWait``."""
    bin_dir.mkdir(exist_ok=True)
    worker = bin_dir / "rtc-annotator"
    worker.write_text(
        '#!/bin/bash\n{ echo "== ${0##*/}"; for a in "$@"; do echo "$a"; done;\n'
        '  echo "name=$RTC_ANNOTATOR_WORKER_NAME"; echo "grace=$RTC_ANNOTATOR_WORKER_SHUTDOWN_GRACE_S";'
        ' } >> "$STUB_LOG"\n'
        'trap \'echo "worker got TERM" >> "$STUB_LOG"; exit 0\' TERM\n'
        'touch "$STUB_LOG.ready"\nwhile true; do sleep 0.1; done\n')
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "KillWait                = {kill_wait} sec"\n')
    for p in (worker, scontrol):
        p.chmod(0o755)


def run_batch(script: str, tmp_path: Path, **env: str) -> tuple[int, list[str], str]:
    """Run the batch script like slurmd does, SIGTERM it once the worker runs."""
    bin_dir = tmp_path / "bin"
    path = tmp_path / "job.sh"
    path.write_text(script)
    log = tmp_path / "stub.log"
    log.unlink(missing_ok=True)
    full = clean_env(PATH=f"{bin_dir}:{os.environ['PATH']}", STUB_LOG=str(log),
                     SLURM_JOB_ID="4242", SLURMD_NODENAME="gpu-a7", **env)
    proc = subprocess.Popen(["bash", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=full)
    ready = Path(f"{log}.ready")
    for _ in range(200):
        if ready.exists():
            break
        time.sleep(0.05)
    ready.unlink(missing_ok=True)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, log.read_text().splitlines(), out + err


def test_slurm_script_names_the_worker_and_passes_sigterm(worker_settings: Settings,
                                                          tmp_path: Path) -> None:
    text = render_worker("slurm", worker_settings, config_path="/etc/rtc/worker.toml")
    fake_worker(tmp_path / "bin", kill_wait="300")
    code, lines, out = run_batch(text, tmp_path)
    assert code == 0, out
    assert lines == ["== rtc-annotator", "--log-level", "INFO", "worker", "--config",
                     "/etc/rtc/worker.toml", "name=gpu-node-7-gpu-a7-4242", "grace=121",
                     "worker got TERM"]
    assert "stopping gpu-node-7-gpu-a7-4242" in out and "exited with status 0" in out
    # requeued: a name of its own; KillWait shorter than the grace: the grace is cut
    fake_worker(tmp_path / "bin", kill_wait="30")
    code, lines, out = run_batch(text, tmp_path, SLURM_RESTART_COUNT="2")
    assert code == 0, out
    assert "name=gpu-node-7-gpu-a7-4242-r2" in lines and "grace=15" in lines
    assert "KillWait is 30 s" in out


def test_slurm_script_runs_the_worker_in_apptainer(worker_settings: Settings,
                                                  tmp_path: Path) -> None:
    text = render_worker("slurm", worker_settings, config_path="/etc/rtc/worker.toml")
    fake_worker(tmp_path / "bin")
    (tmp_path / "bin" / "rtc-annotator").rename(tmp_path / "bin" / "apptainer")
    code, lines, out = run_batch(text, tmp_path, RTC_ANNOTATOR_SIF="/img/w.sif")
    assert code == 0, out
    assert lines[:13] == ["== apptainer", "exec", "--nv", "--bind",
                          "/etc/rtc,/mnt/vast,/nfs/projects,/shared/models,/scratch/cache",
                          "/img/w.sif", "rtc-annotator", "--log-level", "INFO", "worker",
                          "--config", "/etc/rtc/worker.toml", "name=gpu-node-7-gpu-a7-4242"]
    assert lines[-1] == "worker got TERM"


def test_runai_script_submits(worker_settings: Settings, tmp_path: Path) -> None:
    text = render_worker("runai", worker_settings, config_path="/etc/rtc/worker.toml")
    code, lines, err = run_script(text, tmp_path, "sh")
    assert code != 0 and "RUNAI_PROJECT" in err and lines == []
    code, lines, err = run_script(text, tmp_path, "sh", RUNAI_PROJECT="vision-lab")
    assert code == 0, err
    assert lines[:12] == ["== runai", "submit", "--job-name-prefix", "gpu-node-7", "--project",
                          "vision-lab", "--image", "rtc-annotator-worker:latest", "--gpu", "4",
                          "--cpu", "4"]
    assert "RTC_ANNOTATOR_WORKER_SHUTDOWN_GRACE_S=15" in lines  # Kubernetes' 30 s default
    assert lines[-5:-3] == ["--command", "--"]
    assert lines[-3:] == ["sh", "-c", 'RTC_ANNOTATOR_WORKER_NAME="gpu-node-7-$(hostname | '
                          'cut -c1-38)" exec rtc-annotator --log-level INFO worker']
    volumes = [lines[i + 1] for i, a in enumerate(lines) if a == "--volume"]
    assert volumes == ["/etc/rtc:/etc/rtc-annotator:ro", "/mnt/vast:/mnt/vast",
                       "/nfs/projects:/nfs/projects", "/shared/models:/shared/models:ro",
                       "/scratch/cache:/scratch/cache"]
    code, lines, err = run_script(text, tmp_path, "sh", RUNAI_PROJECT="v",
                                  RUNAI_TERMINATION_GRACE_S="300")
    assert code == 0 and "RTC_ANNOTATOR_WORKER_SHUTDOWN_GRACE_S=121" in lines


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
    r = cli("worker", "--render", "slurm", "--dry-run", "--config", str(cfg), "--gpus", "0",
            "--cpus", "3", "--mem", "8G", "--time", "1:00:00", "--partition", "short",
            "--sbatch=--constraint=a100")
    assert r.returncode == 0, r.stderr
    assert "--gres" not in r.stdout
    assert "#SBATCH --cpus-per-task=3\n#SBATCH --mem=8G\n#SBATCH --time=1:00:00\n" in r.stdout
    assert "#SBATCH --partition=short\n" in r.stdout and "#SBATCH --constraint=a100\n" in r.stdout
    r = cli("worker", "--render", "slurm", "--dry-run", "--config", str(cfg), "--mem", "lots")
    assert r.returncode == 2 and "--mem" in r.stderr
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
