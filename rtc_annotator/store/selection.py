"""Selection policies: which run's artifacts count for one (asset, artifact type).

Candidates are the runs that produced artifacts of the type for the asset (the
``run_summaries`` projection), each with its model profile, newest artifact time and run
status (``None`` when the run was never recorded with ``start_run``). The modes:

``default``       the newest *completed* run; without one, the newest run that is not failed or
                  cancelled; without one, the newest run. (Used when nothing is set.)
``latest``        the newest run, whatever its status.
``pinned``        exactly ``run_id``.
``profile``       the newest run with ``model_profile``.
``best_quality``  the run with the highest-ranked profile (high_quality > balanced > fast >
                  anything else), ties broken as in ``default``.

"Newest" orders by the newest artifact time of the run for that type, then by run id, so the
choice is deterministic. A mode that finds no run selects nothing (empty results).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rtc_annotator.errors import RtcAnnotatorError

SelectionMode = Literal["default", "pinned", "latest", "profile", "best_quality"]
MODES: tuple[str, ...] = ("default", "pinned", "latest", "profile", "best_quality")
PROFILE_RANK = {"fast": 0, "balanced": 1, "high_quality": 2}
_STATUS_PREF = {"completed": 2, "failed": 0, "cancelled": 0}


class SelectionError(RtcAnnotatorError):
    """A selection is malformed (missing run id or profile, unknown mode)."""

    code = "SELECTION_ERROR"
    default_hint = (
        "modes: default, latest, pinned (needs run_id), profile (needs model_profile), "
        "best_quality"
    )


class Selection(BaseModel):
    """A selection policy for one (asset, artifact type)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: SelectionMode = Field(default="default", description="Selection mode.")
    run_id: str | None = Field(default=None, max_length=64, description="Run for 'pinned'.")
    model_profile: str | None = Field(
        default=None, max_length=64, description="Profile for 'profile'."
    )

    @model_validator(mode="after")
    def _complete(self) -> Selection:
        if self.mode == "pinned" and not self.run_id:
            raise ValueError("mode 'pinned' needs run_id")
        if self.mode == "profile" and not self.model_profile:
            raise ValueError("mode 'profile' needs model_profile")
        return self


@dataclass(frozen=True)
class Candidate:
    """One run that produced artifacts of the type."""

    run_id: str
    model_profile: str
    last_created_at: datetime
    status: str | None


def _newest(c: Candidate) -> tuple[datetime, str]:
    return (c.last_created_at, c.run_id)


def _default_key(c: Candidate) -> tuple[int, datetime, str]:
    return (_STATUS_PREF.get(c.status or "", 1), c.last_created_at, c.run_id)


def resolve(selection: Selection, candidates: list[Candidate]) -> str | None:
    """The run id the selection picks among ``candidates``, or ``None``."""
    if selection.mode == "pinned":
        return selection.run_id
    pool = candidates
    if selection.mode == "profile":
        pool = [c for c in candidates if c.model_profile == selection.model_profile]
    if not pool:
        return None
    if selection.mode in ("latest", "profile"):
        return max(pool, key=_newest).run_id
    if selection.mode == "best_quality":
        return max(
            pool, key=lambda c: (PROFILE_RANK.get(c.model_profile, -1), *_default_key(c))
        ).run_id
    return max(pool, key=_default_key).run_id
