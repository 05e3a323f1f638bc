"""Deployment helpers: render cluster job scripts for a worker from its configuration.

:func:`~rtc_annotator.deploy.render.render_worker` turns a worker's :class:`Settings` into a
SLURM ``sbatch`` script or a Run:AI submission script (``rtc-annotator worker --render``).
"""

from rtc_annotator.deploy.render import RENDER_KINDS, WorkerJob, render_worker, worker_job

__all__ = ["RENDER_KINDS", "WorkerJob", "render_worker", "worker_job"]
