"""A pool of SLURM workers that follows a room's queue (``rtc-annotator pool``).

:mod:`~rtc_annotator.pool.decide` is the logic (pure), :mod:`~rtc_annotator.pool.slurm` the
SLURM commands and :mod:`~rtc_annotator.pool.service` the loop that joins them.
"""
