"""The pool's decisions (rtc_annotator.pool.decide): pure, no SLURM, no server."""

from __future__ import annotations

from rtc_annotator.pool.decide import (
    Cancel,
    PoolJob,
    PoolState,
    Submit,
    Template,
    Want,
    decide,
)
from rtc_annotator.pool.slurm import job_name, job_of_worker

CPU = Template("cpu", frozenset({"metadata", "scenes"}), frozenset({"nfs"}), slots=1)
GPU = Template("gpu", frozenset({"metadata", "scenes", "transcript"}), frozenset({"vast"}),
               slots=2)


def state(**kw: object) -> PoolState:
    base: dict[str, object] = {"templates": (CPU, GPU), "min_workers": 0, "max_workers": 4}
    base.update(kw)
    return PoolState(**base)  # type: ignore[arg-type]


def submits(plan: object) -> list[tuple[str, str]]:
    return [(a.template, a.kind) for a in plan.actions if isinstance(a, Submit)]  # type: ignore[attr-defined]


def test_idle_room_at_min_does_nothing() -> None:
    plan = decide(state())
    assert plan.actions == () and plan.notes == ()


def test_min_workers_are_base_workers_of_the_first_template() -> None:
    plan = decide(state(min_workers=2, jobs=(PoolJob("7", "cpu", "base", "RUNNING"),)))
    assert submits(plan) == [("cpu", "base")]
    assert "min_workers=2" in plan.actions[0].reason  # type: ignore[union-attr]


def test_queued_requests_start_workers_that_can_take_them() -> None:
    queue = (Want("r1", ("metadata",)), Want("r2", ("transcript",)),
             Want("r3", ("transcript",)), Want("r4", ("transcript",)))
    plan = decide(state(queue=queue))
    # r1 fits the first template; three transcript requests need two 2-slot gpu workers
    assert submits(plan) == [("cpu", "burst"), ("gpu", "burst"), ("gpu", "burst")]


def test_starting_jobs_count_as_coming_capacity() -> None:
    queue = (Want("r1", ("metadata",)), Want("r2", ("metadata",)))
    jobs = (PoolJob("1", "cpu", "burst", "PENDING", "Resources"),
            PoolJob("2", "cpu", "burst", "RUNNING"))
    assert decide(state(queue=queue, jobs=jobs)).actions == ()  # 2 starting cover 2 requests
    # once job 2's worker is online (and busy), the second request needs a new worker
    assert submits(decide(state(queue=queue, jobs=jobs, online=frozenset({"2"})))) == [
        ("cpu", "burst")]


def test_never_more_than_max_workers() -> None:
    queue = tuple(Want(f"r{i}", ("metadata",)) for i in range(10))
    plan = decide(state(queue=queue, max_workers=3,
                        jobs=(PoolJob("1", "cpu", "base", "RUNNING"),), online=frozenset({"1"})))
    assert submits(plan) == [("cpu", "burst")] * 2
    assert any("max_workers=3" in n and "8 more" in n for n in plan.notes)
    full = decide(state(queue=queue, max_workers=1,
                        jobs=(PoolJob("1", "cpu", "base", "RUNNING"),), online=frozenset({"1"})))
    assert full.actions == ()


def test_lowered_max_cancels_pending_jobs_newest_first() -> None:
    jobs = (PoolJob("1", "cpu", "base", "RUNNING"), PoolJob("2", "cpu", "burst", "PENDING"),
            PoolJob("3", "cpu", "burst", "PENDING"), PoolJob("4", "cpu", "burst", "RUNNING"))
    plan = decide(state(max_workers=2, jobs=jobs, online=frozenset({"1", "4"}),
                        queue=(Want("r", ("metadata",)),) * 5))
    assert [a.job_id for a in plan.actions if isinstance(a, Cancel)] == ["3", "2"]
    assert submits(plan) == []


def test_pending_burst_jobs_nobody_needs_are_cancelled_but_not_below_min() -> None:
    jobs = (PoolJob("5", "cpu", "burst", "PENDING"), PoolJob("6", "cpu", "burst", "PENDING"))
    plan = decide(state(jobs=jobs, min_workers=1))
    assert plan.actions == (Cancel("6", "no queued request needs cpu now"),)


def test_strict_storage_and_unservable_requests() -> None:
    queue = (Want("r1", ("metadata",), "vast", strict=True),
             Want("r2", ("metadata",), "vast", strict=False),
             Want("r3", ("ocr",)), Want("r4", ("metadata",), "lustre", strict=True),
             Want("r5", ("metadata",), worker="rtc-n1-4"))
    plan = decide(state(queue=queue))
    # r1 needs vast mounted (gpu); r2 may go anywhere (cpu, first); r5 waits for its worker
    assert submits(plan) == [("cpu", "burst"), ("gpu", "burst")]
    (note,) = plan.notes
    assert note.startswith("2 queued request(s) no template can take")
    assert "pipelines ocr" in note and "storage lustre (strict)" in note


def test_no_templates() -> None:
    plan = decide(PoolState(templates=(), min_workers=1, max_workers=2))
    assert plan.actions == () and "no worker template" in plan.notes[0]


def test_job_names_and_worker_names() -> None:
    assert job_name("vision lab", "cpu", "burst") == "rtcpool.vision-lab.cpu.burst"
    assert job_of_worker("rtc-gpu-a7-4242") == "4242"
    assert job_of_worker("rtc-gpu-a7-4242-r3") == "4242"
    assert job_of_worker("laptop") is None
