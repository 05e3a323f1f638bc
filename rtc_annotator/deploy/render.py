"""Render a worker's cluster job script from its configuration.

``rtc-annotator worker --render slurm|runai`` calls :func:`render_worker`. The job's resources
come from the config's ``[cluster]`` section (flags of ``worker --render`` override it): GPUs
(0: none, no ``--gres``), CPUs, memory, time limit, partition, account, QoS and extra
``#SBATCH`` lines.

- **slurm**: an ``sbatch`` script, submitted once per worker. Every job names its worker
  ``<prefix>-<node>-<job id>`` (``-r<n>`` added when SLURM requeued it ``n`` times), so N jobs
  from one config are N workers and a requeued job never takes over another job's name or
  sessions. The worker logs at INFO into the job log. The batch shell runs the worker in the
  background and forwards SIGTERM to it (scancel, pre-emption, requeue, and
  ``--signal=B:TERM@<grace + 30>`` before the time limit), so a graceful stop exits 0 and SLURM
  records COMPLETED. The grace the worker gives running jobs is ``shutdown_grace_s``, cut at
  run time to what the cluster's ``KillWait`` allows (SLURM sends SIGKILL that long after
  SIGTERM on pre-emption, requeue or plain scancel). The worker runs from an Apptainer image
  (``$RTC_ANNOTATOR_SIF``), a virtualenv (``$RTC_ANNOTATOR_VENV``) or the PATH.
- **runai**: a shell script around the classic ``runai submit`` CLI with the same resources,
  a generated job name per submission (``--job-name-prefix``), the worker named after its pod,
  and a grace cut to the pod's termination grace period.

The templates are Python strings here (no package data); every value that reaches a shell is
quoted with :func:`shlex.quote` or validated to a safe alphabet. Rendering is deterministic: the
same settings give the same bytes, so rendered examples can be committed and checked for drift.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

from rtc_annotator.config import Settings
from rtc_annotator.errors import RtcAnnotatorError

RENDER_KINDS = ("slurm", "runai")
DEFAULT_JOB_NAME = "rtc-annotator-worker"
DEFAULT_PREFIX = "rtc"
"""Worker name prefix when ``[worker] name`` is not set."""
DEFAULT_IMAGE = "rtc-annotator-worker:latest"
CONTAINER_CONFIG_DIR = "/etc/rtc-annotator"
SIGNAL_MARGIN_S = 30
"""Seconds on top of ``shutdown_grace_s`` for leaving the room and closing peer links."""
STOP_MARGIN_S = 15
"""What the worker needs after its grace: cancelled jobs (10 s), links and runner (a few s)."""


class RenderError(RtcAnnotatorError):
    """A job script cannot be rendered from this configuration."""

    code = "RENDER_ERROR"


@dataclass(frozen=True)
class WorkerJob:
    """What a cluster job for one worker needs, taken from the worker's settings."""

    name: str
    """Job name and worker-name prefix: ``[worker] name`` when set, else the defaults."""
    prefix: str
    """Worker names are ``<prefix>-<node>-<job id>`` (SLURM) or ``<prefix>-<pod>`` (Run:AI)."""
    gpus: int
    """GPUs to request: ``[cluster] gpus``, else ``[worker] job_slots`` (1 when unset); 0: none."""
    cpus: int
    mem: str | None
    time_limit: str
    partition: str | None
    account: str | None
    qos: str | None
    sbatch_lines: tuple[str, ...]
    log_dir: str | None
    config_path: str
    """Absolute path of the worker config file as the cluster node sees it."""
    config_name: str
    """Name of the config file it was rendered from, shown in the generated-by line."""
    mounts: tuple[str, ...]
    """Directories the job must see: storage base paths, models_dir, cache_dir (when set)."""
    models_dir: str | None
    """``[worker] models_dir``, mounted read-only on Run:AI."""
    grace_s: float
    """``[worker] shutdown_grace_s``."""
    image: str
    """Container image for Run:AI (default :data:`DEFAULT_IMAGE`)."""

    @property
    def signal_s(self) -> int:
        """Seconds before the time limit at which SLURM sends SIGTERM."""
        return int(math.ceil(self.grace_s)) + SIGNAL_MARGIN_S


def worker_job(settings: Settings, *, config_path: str, image: str = DEFAULT_IMAGE) -> WorkerJob:
    """Collect what the job scripts need from ``settings``; ``config_path`` is where the
    config file lies on the cluster (absolute)."""
    path = PurePosixPath(config_path)
    if not path.is_absolute():
        raise RenderError(f"config path {config_path!r} is not absolute",
                          hint="give the config file's absolute path on the cluster "
                               "(--remote-config /path/worker.toml)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*", image):
        raise RenderError(f"image {image!r} is not a container image reference",
                          hint="give something like registry.example.org/lab/rtc-annotator:1.0")
    w, c = settings.worker, settings.cluster
    named = "name" in w.model_fields_set
    mounts: list[str] = []
    for backend in settings.storage.values():
        mounts.append(str(backend.base_path))
    if w.models_dir is not None:
        mounts.append(str(w.models_dir))
    if "cache_dir" in w.model_fields_set:
        mounts.append(str(w.cache_dir))
    unique = tuple(dict.fromkeys(mounts))
    return WorkerJob(
        name=w.name if named else DEFAULT_JOB_NAME,
        prefix=worker_prefix(w.name) if named else DEFAULT_PREFIX,
        gpus=c.gpus if c.gpus is not None else (w.job_slots or 1),
        cpus=c.cpus, mem=c.mem, time_limit=c.time_limit, partition=c.partition,
        account=c.account, qos=c.qos, sbatch_lines=tuple(c.sbatch_lines),
        log_dir=str(c.log_dir) if c.log_dir is not None else None,
        config_path=str(path),
        config_name=re.sub(r"[^\x20-\x7e]", "?", (settings.source or path).name),
        mounts=unique, models_dir=str(w.models_dir) if w.models_dir is not None else None,
        grace_s=w.shutdown_grace_s, image=image,
    )


def slurm_name(name: str) -> str:
    """A job name safe on an ``#SBATCH`` line: letters, digits, ``.``, ``_`` and ``-``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:100]
    return safe or DEFAULT_JOB_NAME


def runai_name(name: str) -> str:
    """A Kubernetes-safe (DNS-1123 label) job name: lower case, digits and ``-``."""
    safe = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40].strip("-")
    return safe or DEFAULT_JOB_NAME


def worker_prefix(name: str) -> str:
    """A worker-name prefix (letters, digits, ``._-``) leaving room for node and job id."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:24].strip("-.")
    return safe or DEFAULT_PREFIX


_SLURM = """\
#!/bin/bash
# rtc-annotator worker as a SLURM job, generated by
#   rtc-annotator worker --render slurm --config {config_name}
# Re-render after changing the worker config; the job's resources are its [cluster] section.
# One worker per job: `sbatch` this script N times for N workers (each is named
# {prefix}-<node>-<job id>). Stop one with `scancel --batch --signal=TERM <job id>`: it
# finishes its running jobs within the grace period, exits 0 and the job ends COMPLETED.
#SBATCH --job-name={name}
{resources}#SBATCH --signal=B:TERM@{signal_s}
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output={output}
{extra}
set -uo pipefail

# The worker config as this node sees it (a shared filesystem).
export RTC_ANNOTATOR_CONFIG={config}
# Compute nodes often have no internet: models come from [worker] models_dir only.
export HF_HUB_OFFLINE=1 YOLO_OFFLINE=1

# A worker name of its own per job, and per run of a requeued job: two jobs never replace each
# other in the room, and a requeued job never takes the sessions of its previous run.
name="{prefix}-${{SLURMD_NODENAME:-$(hostname -s)}}-${{SLURM_JOB_ID:-$$}}"
if [ "${{SLURM_RESTART_COUNT:-0}}" -gt 0 ]; then name="$name-r$SLURM_RESTART_COUNT"; fi
name=$(printf '%s' "$name" | tr -c 'A-Za-z0-9._@:-' '-' | cut -c1-64)
export RTC_ANNOTATOR_WORKER_NAME="$name"

# Grace for running jobs after SIGTERM: shutdown_grace_s ({grace} s), cut to what SLURM allows.
# On pre-emption, requeue or a plain scancel, SLURM sends SIGKILL KillWait seconds after
# SIGTERM; the worker needs {margin} s after its grace to hand back and leave.
grace={grace_int}
kill_wait=$(scontrol show config 2>/dev/null | awk '$1 == "KillWait" {{print $3}}')
if [[ "$kill_wait" =~ ^[0-9]+$ ]] && [ $((grace + {margin})) -gt "$kill_wait" ]; then
    grace=$(( kill_wait >= 2 * {margin} ? kill_wait - {margin} : kill_wait / 3 ))
    echo "rtc-annotator job: KillWait is ${{kill_wait}} s: grace for running jobs is ${{grace}} s"
fi
export RTC_ANNOTATOR_WORKER_SHUTDOWN_GRACE_S="$grace"

# Container (Apptainer) when RTC_ANNOTATOR_SIF is set; else a virtualenv (RTC_ANNOTATOR_VENV)
# or rtc-annotator on the PATH. The container sees the config directory, models_dir,
# cache_dir and every storage base_path at the same paths as the host.
BINDS={binds}
RUN=()
if [ -n "${{RTC_ANNOTATOR_SIF:-}}" ]; then
    RUN=(apptainer exec --nv --bind "$BINDS" "$RTC_ANNOTATOR_SIF")
elif [ -n "${{RTC_ANNOTATOR_VENV:-}}" ]; then
    source "$RTC_ANNOTATOR_VENV/bin/activate"
fi

echo "rtc-annotator job: starting worker $name (restart ${{SLURM_RESTART_COUNT:-0}})"
${{RUN[@]+"${{RUN[@]}}"}} rtc-annotator --log-level INFO worker --config "$RTC_ANNOTATOR_CONFIG" &
worker=$!
# SIGTERM reaches this shell (scancel --batch, B:TERM before the time limit, pre-emption):
# pass it on; the worker leaves the room, lets running jobs finish within the grace, exits 0.
trap 'echo "rtc-annotator job: SIGTERM, stopping $name"; kill -TERM "$worker"' TERM INT
while true; do
    wait "$worker"
    status=$?
    kill -0 "$worker" 2>/dev/null || break
done
echo "rtc-annotator job: worker $name exited with status $status"
exit "$status"
"""

_RUNAI = """\
#!/bin/sh
# rtc-annotator worker on Run:AI, generated by
#   rtc-annotator worker --render runai --config {config_name}
# Needs the Run:AI CLI (`runai submit`), your project in RUNAI_PROJECT, and the worker image
# (docker/worker.Dockerfile) in a registry the cluster pulls from (RTC_ANNOTATOR_IMAGE).
# Run it once per worker: each submission gets its own job name (--job-name-prefix) and the
# worker is named {prefix}-<pod name>, so workers never replace each other.
# The volumes are host paths on the GPU nodes; on clusters that expose the shares as PVCs
# use --pvc / --existing-pvc with the same mount points instead.
# Kubernetes kills a pod terminationGracePeriodSeconds (default 30 s) after SIGTERM: the
# worker's grace for running jobs (shutdown_grace_s, {grace} s) is cut to that minus {margin} s.
# Set RUNAI_TERMINATION_GRACE_S when your template or policy raised it.
set -eu
: "${{RUNAI_PROJECT:?set RUNAI_PROJECT to your Run:AI project}}"
IMAGE="${{RTC_ANNOTATOR_IMAGE:-{image}}}"
KILL_AFTER="${{RUNAI_TERMINATION_GRACE_S:-30}}"
case "$KILL_AFTER" in
    ''|*[!0-9]*) echo "RUNAI_TERMINATION_GRACE_S must be whole seconds" >&2; exit 2;;
esac
GRACE={grace_int}
if [ $((GRACE + {margin})) -gt "$KILL_AFTER" ]; then
    GRACE=$(( KILL_AFTER >= 2 * {margin} ? KILL_AFTER - {margin} : KILL_AFTER / 3 ))
fi

exec runai submit \\
    --job-name-prefix {name} \\
    --project "$RUNAI_PROJECT" \\
    --image "$IMAGE" \\
{resources}{volumes}    --environment RTC_ANNOTATOR_CONFIG={container_config} \\
    --environment RTC_ANNOTATOR_WORKER_SHUTDOWN_GRACE_S="$GRACE" \\
    --environment HF_HUB_OFFLINE=1 \\
    --environment YOLO_OFFLINE=1 \\
    --command -- sh -c {command}
"""


def _sbatch(option: str, value: object) -> str:
    return f"#SBATCH --{option}={value}\n"


def render_slurm(job: WorkerJob) -> str:
    """The ``sbatch`` script for ``job``."""
    config_dir = str(PurePosixPath(job.config_path).parent)
    binds = ",".join(dict.fromkeys([config_dir, *job.mounts]))
    name = slurm_name(job.name)
    resources = _sbatch("gres", f"gpu:{job.gpus}") if job.gpus > 0 else ""
    resources += _sbatch("cpus-per-task", job.cpus)
    if job.mem is not None:
        resources += _sbatch("mem", job.mem)
    resources += _sbatch("time", job.time_limit)
    for option in ("partition", "account", "qos"):
        value = getattr(job, option)
        if value is not None:
            resources += _sbatch(option, value)
    output = f"{name}-%j.log"
    if job.log_dir is not None:
        if re.search(r"[\s\x00-\x1f\x7f]", job.log_dir):
            raise RenderError(f"log_dir {job.log_dir!r} holds blanks or control characters",
                              hint="#SBATCH --output cannot quote: pick a plain directory")
        output = f"{job.log_dir.rstrip('/')}/{output}"
    extra = "".join(f"#SBATCH {line}\n" for line in job.sbatch_lines)
    return _SLURM.format(
        config_name=job.config_name, name=name, prefix=job.prefix, resources=resources,
        signal_s=job.signal_s, output=output, extra=extra,
        config=shlex.quote(job.config_path), binds=shlex.quote(binds),
        grace=f"{job.grace_s:g}", grace_int=int(math.ceil(job.grace_s)), margin=STOP_MARGIN_S,
    )


def render_runai(job: WorkerJob) -> str:
    """The ``runai submit`` script for ``job``."""
    config_dir = str(PurePosixPath(job.config_path).parent)
    volumes = [f"{config_dir}:{CONTAINER_CONFIG_DIR}:ro"]
    for mount in job.mounts:
        suffix = ":ro" if mount == job.models_dir else ""
        volumes.append(f"{mount}:{mount}{suffix}")
    lines = "".join(f"    --volume {shlex.quote(v)} \\\n" for v in volumes)
    resources = f"    --gpu {job.gpus} \\\n" if job.gpus > 0 else ""
    resources += f"    --cpu {job.cpus} \\\n"
    if job.mem is not None:
        resources += f"    --memory {job.mem} \\\n"
    container_config = f"{CONTAINER_CONFIG_DIR}/{PurePosixPath(job.config_path).name}"
    inner = (f'RTC_ANNOTATOR_WORKER_NAME="{job.prefix}-$(hostname | cut -c1-38)" '
             "exec rtc-annotator --log-level INFO worker")
    return _RUNAI.format(
        config_name=job.config_name, name=shlex.quote(runai_name(job.name)), prefix=job.prefix,
        resources=resources, volumes=lines, container_config=shlex.quote(container_config),
        grace=f"{job.grace_s:g}", grace_int=int(math.ceil(job.grace_s)), margin=STOP_MARGIN_S,
        image=job.image, command=shlex.quote(inner),
    )


def render_worker(kind: str, settings: Settings, *, config_path: str,
                  image: str = DEFAULT_IMAGE) -> str:
    """Render the ``kind`` (``slurm`` or ``runai``) job script for a worker with ``settings``."""
    job = worker_job(settings, config_path=config_path, image=image)
    if kind == "slurm":
        return render_slurm(job)
    if kind == "runai":
        return render_runai(job)
    raise RenderError(f"unknown render target {kind!r}", hint="use --render slurm or runai")
