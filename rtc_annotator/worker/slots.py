"""Job slots: how many jobs run at once, and which GPU each slot uses."""

from __future__ import annotations

from dataclasses import dataclass

from rtc_annotator.config import Settings
from rtc_annotator.pipelines.gpu import detect_gpus


@dataclass(frozen=True)
class Slot:
    """One place a job can run."""

    index: int
    """Slot number, 0-based."""
    gpu_index: int | None
    """GPU the job in this slot sees (as CUDA device 0); None runs on CPU."""


def slot_count(settings: Settings, slots: int | None = None) -> int:
    """``slots`` if given, else ``[worker] job_slots``, else one per GPU, else 1."""
    if slots is not None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        return slots
    if settings.worker.job_slots is not None:
        return settings.worker.job_slots
    return max(1, len(detect_gpus()))


def default_slots(settings: Settings, slots: int | None = None) -> list[Slot]:
    gpus = detect_gpus()
    n = slot_count(settings, slots)
    return [Slot(i, gpus[i % len(gpus)].index if gpus else None) for i in range(n)]
