"""`rtc-annotator worker`: run a worker agent until SIGTERM (exit 0 after a clean shutdown), or
render its cluster job script (`--render slurm|runai`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from rtc_annotator.commands.common import ConfigOption, fail, fail_with, settings_from
from rtc_annotator.config import Settings
from rtc_annotator.errors import RtcAnnotatorError


def with_cluster(settings: Settings, overrides: dict[str, Any]) -> Settings:
    """``settings`` with ``[cluster]`` keys replaced by the given (non-None) flag values."""
    from pydantic import ValidationError

    from rtc_annotator.config import ClusterSettings

    changes = {k: v for k, v in overrides.items() if v is not None and v != []}
    if not changes:
        return settings
    data = settings.cluster.model_dump(exclude_unset=True)
    data.update(changes)
    try:
        cluster = ClusterSettings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        flag = {"time_limit": "time", "sbatch_lines": "sbatch"}.get(key.split(".")[0], key)
        fail(f"CONFIG_ERROR: --{flag}: {str(err['msg']).removeprefix('Value error, ')}")
    copy = settings.model_copy(update={"cluster": cluster})
    copy.source = settings.source
    return copy


def _render(settings: Settings, kind: str, *, dry_run: bool, output: Path | None,
            remote_config: str | None, image: str) -> None:
    from rtc_annotator.deploy.render import RENDER_KINDS, render_worker

    if kind not in RENDER_KINDS:
        fail(f"RENDER_ERROR: unknown render target {kind!r} -- use --render slurm or runai")
    if remote_config is None:
        if settings.source is None:
            fail("RENDER_ERROR: no config file to point the job at -- give --config FILE "
                 "(or --remote-config PATH, the file's path on the cluster)")
        remote_config = os.path.abspath(settings.source)
    if not dry_run and output is None:
        fail("RENDER_ERROR: nowhere to write the script -- give -o FILE, or --dry-run to print it")
    try:
        text = render_worker(kind, settings, config_path=remote_config, image=image)
    except RtcAnnotatorError as exc:
        fail_with(exc)
    if dry_run:
        typer.echo(text, nl=False)
        return
    assert output is not None
    try:
        output.write_text(text, encoding="utf-8")
        output.chmod(0o755)
    except OSError as exc:
        fail(f"RENDER_ERROR: cannot write {output}: {exc.strerror} -- check the directory",
             code=1)
    typer.echo(f"wrote {output}")


def worker_cmd(
    config: ConfigOption = None,
    render: Annotated[str | None, typer.Option(
        "--render", metavar="slurm|runai",
        help="Do not run: render a SLURM sbatch script or a Run:AI submission script for "
             "this worker config.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="With --render: print the script instead of writing it.")] = False,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="With --render: write the script to this file.")] = None,
    remote_config: Annotated[str | None, typer.Option(
        "--remote-config",
        help="With --render: the config file's absolute path on the cluster "
             "(default: the --config file's absolute path).")] = None,
    image: Annotated[str, typer.Option(
        "--image", help="With --render runai: the worker container image "
                        "(the script's default for $RTC_ANNOTATOR_IMAGE).")
    ] = "rtc-annotator-worker:latest",
    gpus: Annotated[int | None, typer.Option(
        "--gpus", help="With --render: GPUs per job, 0 for none ([cluster] gpus).")] = None,
    cpus: Annotated[int | None, typer.Option(
        "--cpus", help="With --render: CPUs per job ([cluster] cpus).")] = None,
    mem: Annotated[str | None, typer.Option(
        "--mem", help="With --render: memory per job, e.g. 32G ([cluster] mem).")] = None,
    time_limit: Annotated[str | None, typer.Option(
        "--time", help="With --render slurm: time limit, e.g. 12:00:00 ([cluster] time_limit).")
    ] = None,
    partition: Annotated[str | None, typer.Option(
        "--partition", help="With --render slurm: partition ([cluster] partition).")] = None,
    account: Annotated[str | None, typer.Option(
        "--account", help="With --render slurm: account ([cluster] account).")] = None,
    qos: Annotated[str | None, typer.Option(
        "--qos", help="With --render slurm: QoS ([cluster] qos).")] = None,
    sbatch_lines: Annotated[list[str] | None, typer.Option(
        "--sbatch", help="With --render slurm: an extra #SBATCH option, e.g. "
                         "--sbatch=--constraint=a100 (repeatable; [cluster] sbatch_lines).")
    ] = None,
) -> None:
    """Connect to the signaling server, register this node's capabilities and serve jobs.

    SIGTERM (SLURM pre-emption, Run:AI eviction) stops taking jobs, gives running jobs
    [worker] shutdown_grace_s to finish, and exits 0.

    With --render slurm|runai it only renders the cluster job script for this config.
    """
    settings = settings_from(config)
    if render is not None:
        settings = with_cluster(settings, {
            "gpus": gpus, "cpus": cpus, "mem": mem, "time_limit": time_limit,
            "partition": partition, "account": account, "qos": qos,
            "sbatch_lines": sbatch_lines})
        _render(settings, render, dry_run=dry_run, output=output,
                remote_config=remote_config, image=image)
        return
    if dry_run or output is not None:
        fail("--dry-run and -o only go with --render slurm|runai")
    if not settings.signaling.token:
        fail(
            "CONFIG_ERROR: [signaling] token is not set -- ask the room admin for a worker "
            "token (`rtc-annotator room token --role worker`)"
        )
    from rtc_annotator.worker.agent import WorkerAgent

    async def main() -> None:
        agent = WorkerAgent(settings)
        await agent.run(install_signal_handlers=True)

    try:
        asyncio.run(main())
    except RtcAnnotatorError as exc:
        fail_with(exc, code=1)


def register(root: typer.Typer) -> None:
    root.command("worker")(worker_cmd)
