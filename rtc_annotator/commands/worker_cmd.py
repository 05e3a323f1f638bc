"""`rtc-annotator worker`: run a worker agent until SIGTERM (exit 0 after a clean shutdown)."""

from __future__ import annotations

import asyncio

import typer

from rtc_annotator.commands.common import ConfigOption, fail, fail_with, settings_from
from rtc_annotator.errors import RtcAnnotatorError


def worker_cmd(config: ConfigOption = None) -> None:
    """Connect to the signaling server, register this node's capabilities and serve jobs.

    SIGTERM (SLURM pre-emption, Run:AI eviction) stops taking jobs, gives running jobs
    [worker] shutdown_grace_s to finish, and exits 0.
    """
    settings = settings_from(config)
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
