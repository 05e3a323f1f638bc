"""Jobs from the browser: serve acts as the client (same code as `submit`, same job registry)
against a real signaling server and an in-process worker with one slot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rtc_annotator.client.jobs import JobRegistry
from tests.conftest import VideoFactory
from tests.e2e.conftest import (  # noqa: F401
    MakeSettings,
    StartWorker,
    fast_link,
    make_settings,
    room_tokens,
    signaling_server,
    start_worker,
)
from tests.web.conftest import ServeApp, screenshot


async def _submit(page: Any, video: Path, pipelines: str = "metadata,scenes") -> str:
    await page.fill("#job-video", str(video))
    await page.fill("#job-pipelines", pipelines)
    async with page.expect_response(
            lambda r: r.url.endswith("/v1/jobs") and r.request.method == "POST") as info:
        await page.click("#job-form button[type=submit]")
    resp = await info.value
    assert resp.status == 202, await resp.text()
    return str((await resp.json())["job"]["job_id"])


async def test_jobs_queue_complete_and_cancel(
        fresh_browser: Any, serve_app_fn: ServeApp, make_settings: MakeSettings,  # noqa: F811
        start_worker: StartWorker, make_video: VideoFactory) -> None:  # noqa: F811
    # videos first: ffmpeg runs synchronously and would stall the in-process worker's
    # heartbeats (the test signaling server drops a worker silent for 3 s)
    long_clip = make_video(colors=("red", "blue", "green", "yellow", "white", "black"),
                           seconds_each=1.5, size="320x240", name="long.mp4")
    short_clip = make_video(colors=("red", "blue"), seconds_each=0.5, name="short.mp4")
    await start_worker("gpu-1", job_slots=1)
    settings = make_settings("laptop", role="client")
    base = await serve_app_fn(settings, jobs=True, link_options=fast_link())

    page = await fresh_browser.new_page()
    await page.goto(base + "/#/jobs")
    first = await _submit(page, long_clip)
    # once the first holds the worker's only slot, the next ones wait in the route queue
    await page.locator(f"#job-table tr[data-job='{first}'] td",
                       has_text="routed:").wait_for()
    second = await _submit(page, short_clip)
    third = await _submit(page, short_clip, "metadata")
    rows = page.locator("#job-table tbody tr")
    await page.locator(f"#job-table tr[data-job='{third}'] .queue").wait_for()
    text = await page.locator(f"#job-table tr[data-job='{third}']").inner_text()
    assert "queue position" in text
    await screenshot(page, "webapp-jobs.png")
    await page.click(f"#job-table tr[data-job='{third}'] button.cancel")
    await page.locator(f"#job-table tr[data-job='{third}'][data-status=cancelled]").wait_for()
    for job in (first, second):
        await page.locator(f"#job-table tr[data-job='{job}'][data-status=done]").wait_for(
            timeout=60_000)
    assert await rows.count() == 3
    first_row = await page.locator(f"#job-table tr[data-job='{first}']").inner_text()
    assert "gpu-1" in first_row and "scenes 100%" in first_row
    # the same registry `rtc-annotator jobs list/attach` reads
    records = {r.job_id: r for r in await JobRegistry(settings.client.jobs_path()).list()}
    assert records[first].status.value == "done" and records[first].worker == "gpu-1"
    assert records[second].status.value == "done"
    assert records[third].status.value == "cancelled"
    assert records[first].artifacts > 0
    # the video link leads to its results
    await page.click(f"#job-table tr[data-job='{first}'] a")
    await page.locator("#timeline .lane[data-lane=scene] .item").first.wait_for()
    assert await page.locator("#timeline .lane[data-lane=scene] .item").count() == 6


async def test_job_errors_show_their_hint(
        fresh_browser: Any, serve_app_fn: ServeApp, make_settings: MakeSettings,  # noqa: F811
        make_video: VideoFactory, tmp_path: Path) -> None:
    settings = make_settings("laptop", role="client")
    base = await serve_app_fn(settings, jobs=True, link_options=fast_link())
    page = await fresh_browser.new_page()
    await page.goto(base + "/#/jobs")
    # a bad path is refused at once, with what to do
    await page.fill("#job-video", str(tmp_path / "nope.mp4"))
    await page.click("#job-form button[type=submit]")
    await page.wait_for_function(
        "() => document.getElementById('job-error').textContent.includes('VIDEO_ERROR')")
    # no worker in the room: the job fails with the signaling server's reason and hint
    job = await _submit(page, make_video(colors=("red",), seconds_each=0.5, name="one.mp4"))
    row = page.locator(f"#job-table tr[data-job='{job}'][data-status=failed]")
    await row.wait_for()
    text = await row.inner_text()
    assert "NO_MATCHING_WORKER" in text and "rtc-annotator room workers" in text


async def test_cancel_a_running_job(
        serve_app_fn: ServeApp, make_settings: MakeSettings,  # noqa: F811
        start_worker: StartWorker, make_video: VideoFactory) -> None:  # noqa: F811
    """DELETE on a job serve is following: it stops following, attaches and cancels on the
    worker, as `jobs cancel` does; the runs are marked cancelled, what came is kept."""
    import asyncio

    import aiohttp

    from rtc_annotator.store import Store

    video = make_video(colors=("red", "blue") * 6, seconds_each=1.0, size="1280x720",
                       name="slow.mp4")  # before the worker starts (see above)
    await start_worker("gpu-c", job_slots=1)
    settings = make_settings("laptop-c", role="client")
    base = await serve_app_fn(settings, jobs=True, link_options=fast_link())
    slow = {"scenes": {"downscale_width": 0, "min_scene_len_ms": 200}}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/v1/jobs", json={"video": str(video), "options": slow,
                                                   "pipelines": ["metadata", "scenes"]}) as r:
            assert r.status == 202
            job_id = (await r.json())["job"]["job_id"]
        for _ in range(600):
            async with s.get(f"{base}/v1/jobs/{job_id}") as r:
                job = (await r.json())["job"]
            if job["live"]["artifacts"] > 0:
                break
            await asyncio.sleep(0.05)
        assert job["live"]["running"] and job["status"] == "running", job
        async with s.delete(f"{base}/v1/jobs/{job_id}") as r:
            assert r.status == 200
            job = (await r.json())["job"]
    assert job["status"] == "cancelled" and job["live"]["phase"] == "cancelled", job
    assert job["live"]["error"]["code"] == "CANCELLED"
    store = await Store.open(settings.database.url)
    try:
        assert (await store.get_run(f"{job_id}-scenes"))["status"] == "cancelled"
    finally:
        await store.close()


async def test_events_show_jobs_of_other_clients(
        serve_app_fn: ServeApp, make_settings: MakeSettings,  # noqa: F811
        tmp_path: Path) -> None:
    """A job that another process (`submit`, `jobs attach`) records in the shared registry
    reaches the page's event stream, and so does each change of it."""
    import asyncio
    import json

    import aiohttp

    from rtc_annotator.client.jobs import JobRecord, JobStatus

    settings = make_settings("laptop-e", role="client")
    base = await serve_app_fn(settings, jobs=True)
    registry = JobRegistry(settings.client.jobs_path())
    seen: list[tuple[str, str]] = []

    async def read(resp: aiohttp.ClientResponse) -> None:
        async for line in resp.content:
            if line.startswith(b"data: "):
                job = json.loads(line[6:])
                seen.append((job["job_id"], job["status"]))

    async def wait_for(item: tuple[str, str]) -> None:
        for _ in range(200):
            if item in seen:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{item} not in {seen}")

    async with aiohttp.ClientSession() as s, s.get(f"{base}/v1/jobs/events") as resp:
        reader = asyncio.create_task(read(resp))
        try:
            record = JobRecord(job_id="clijob1", video=str(tmp_path / "a.mp4"),
                               status=JobStatus.RUNNING, worker="gpu-x")
            await registry.save(record)
            await wait_for(("clijob1", "running"))
            record.set_status(JobStatus.DONE)
            await registry.save(record)
            await wait_for(("clijob1", "done"))
        finally:
            reader.cancel()
