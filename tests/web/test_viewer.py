"""The results viewer in a real browser: timeline, seeking, boxes, jump, find, selections,
exports, and a video whose file is not on this machine."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import CAT_FRAME, DOG_FRAMES, ServeApp, ViewerData, screenshot

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _open_video(browser: Any, base: str, asset: str) -> Any:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    await page.goto(f"{base}/#/video/{asset}")
    await page.wait_for_selector("#timeline .lane[data-lane=scene] .item")
    return page


async def _wait_video_ready(page: Any) -> None:
    await page.wait_for_function(
        "() => { const v = document.getElementById('player'); "
        "return v.src && v.readyState >= 1 && v.duration > 0; }")


async def _seek(page: Any, seconds: float) -> None:
    await page.evaluate(
        """(t) => new Promise((ok) => { const v = document.getElementById('player');
        v.addEventListener('seeked', () => ok(), { once: true }); v.currentTime = t; })""",
        seconds)


async def test_videos_list_shows_counts_and_runs(browser: Any, serve_app: ServeApp,
                                                 viewer_data: ViewerData,
                                                 tmp_path: Path) -> None:
    base = await serve_app(viewer_data.settings(tmp_path))
    page = await browser.new_page()
    await page.goto(base + "/")
    row = page.locator(f"#video-table tr[data-asset='{viewer_data.asset}']")
    await row.wait_for()
    text = await row.inner_text()
    assert "lecture.mp4" in text
    assert "object.detection: 12" in text and "transcript.segment: 3" in text
    assert "scenes (high_quality, completed)" in text and "metadata (balanced" in text
    await screenshot(page, "webapp-videos.png")


async def test_clicking_a_scene_seeks_the_video(browser: Any, serve_app: ServeApp,
                                               viewer_data: ViewerData, tmp_path: Path) -> None:
    base = await serve_app(viewer_data.settings(tmp_path))
    page = await _open_video(browser, base, viewer_data.asset)
    await _wait_video_ready(page)
    lane = page.locator("#timeline .lane[data-lane=scene] .item")
    assert await lane.count() == 3  # red, blue, green: the real scenes pipeline found 3 shots
    second = lane.nth(1)
    start_ms = int(await second.get_attribute("data-start"))
    assert 900 <= start_ms <= 1100
    await second.click()
    await page.wait_for_function(
        "(t) => Math.abs(document.getElementById('player').currentTime - t) < 0.001",
        arg=start_ms / 1000)
    # a transcript item seeks too, and the current segment follows
    seg = page.locator("#timeline .lane[data-lane=transcript] .item").nth(2)
    await seg.click()
    await page.wait_for_function(
        "() => Math.abs(document.getElementById('player').currentTime - 2.1) < 0.001")
    assert await page.inner_text("#now-transcript") == "questions at the end"
    assert page.errors == []


async def test_current_transcript_and_ocr_follow_playback(browser: Any, serve_app: ServeApp,
                                                          viewer_data: ViewerData,
                                                          tmp_path: Path) -> None:
    base = await serve_app(viewer_data.settings(tmp_path))
    page = await _open_video(browser, base, viewer_data.asset)
    await _wait_video_ready(page)
    await _seek(page, 0.5)
    assert await page.inner_text("#now-transcript") == "welcome to the lecture"
    assert await page.inner_text("#now-ocr") == "-"
    await page.evaluate("() => { const v = document.getElementById('player'); v.muted = true;"
                        " v.currentTime = 1.4; return v.play(); }")
    # playing on from 1.4 s: the OCR text that starts at 1.5 s appears by itself, and the
    # transcript line shown is the segment of the moment
    handle = await page.wait_for_function(
        """() => { const v = document.getElementById('player');
        if (document.getElementById('now-ocr').textContent !== 'Gradient slide') return null;
        v.pause();
        return [v.currentTime, document.getElementById('now-transcript').textContent]; }""")
    t, line = await handle.json_value()
    assert 1.5 <= t < 2.5
    assert line == ("gradient descent step by step" if t < 2.0 else "-" if t < 2.1
                    else "questions at the end")


async def test_boxes_appear_at_their_frames_and_disappear_after(
        browser: Any, serve_app: ServeApp, viewer_data: ViewerData, tmp_path: Path) -> None:
    base = await serve_app(viewer_data.settings(tmp_path))
    page = await _open_video(browser, base, viewer_data.asset)
    await _wait_video_ready(page)
    boxes = page.locator("#overlay .box")
    await _seek(page, 0.9)
    assert await boxes.count() == 0  # before the first detected frame
    await _seek(page, CAT_FRAME / 1000 + 0.01)
    assert await boxes.count() == 2
    labels = sorted(await boxes.evaluate_all("(bs) => bs.map((b) => b.dataset.label)"))
    assert labels == ["cat", "dog"]
    await screenshot(page, "webapp-viewer.png",
                     settle="() => document.getElementById('player').readyState >= 4")
    dog = page.locator("#overlay .box[data-label=dog]")
    colour = await dog.evaluate("(b) => b.style.borderColor")
    assert "0.90" in await dog.inner_text() and "#7" in await dog.inner_text()
    left_at_1200 = await dog.evaluate("(b) => parseFloat(b.style.left)")
    await _seek(page, DOG_FRAMES[-1] / 1000 + 0.01)
    assert await dog.evaluate("(b) => b.style.borderColor") == colour  # track 7 keeps its colour
    assert await dog.evaluate("(b) => parseFloat(b.style.left)") > left_at_1200
    # the last frame's boxes stay one frame period (40 ms at 25 fps), then go
    await _seek(page, DOG_FRAMES[-1] / 1000 + 0.1)
    assert await boxes.count() == 0
    await _seek(page, 2.5)
    assert await boxes.count() == 0
    # filters: minimum confidence hides the 0.3 cat; the label filter keeps only cats
    await _seek(page, CAT_FRAME / 1000 + 0.01)
    await page.locator("#min-conf").fill("0.5")
    assert await page.locator("#overlay .box").evaluate_all(
        "(bs) => bs.map((b) => b.dataset.label)") == ["dog"]
    await page.locator("#min-conf").fill("0")
    await page.select_option("#label-filter", ["cat"])
    assert await page.locator("#overlay .box").evaluate_all(
        "(bs) => bs.map((b) => b.dataset.label)") == ["cat"]
    assert page.errors == []


async def test_keyboard_jumps(browser: Any, serve_app: ServeApp, viewer_data: ViewerData,
                              tmp_path: Path) -> None:
    base = await serve_app(viewer_data.settings(tmp_path))
    page = await _open_video(browser, base, viewer_data.asset)
    await _wait_video_ready(page)
    await _seek(page, 0.1)

    async def press(key: str, want_ms: int) -> None:
        await page.keyboard.press(key)
        await page.wait_for_function(
            "(t) => Math.abs(document.getElementById('player').currentTime * 1000 - t) < 1",
            arg=want_ms)

    starts = [int(x) for x in await page.locator("#timeline .lane[data-lane=scene] .item")
              .evaluate_all("(items) => items.map((i) => i.dataset.start)")]
    # each jump goes to the first one strictly after (before, with Shift) the current time
    await press("o", DOG_FRAMES[0])
    await press("o", DOG_FRAMES[1])
    await press("s", starts[2])
    await press("Shift+S", starts[1])
    await press("Shift+T", 200)
    await press("t", 1000)
    await press("x", 1500)
    await press("x", 2600)
    await press("Shift+X", 1500)
    assert "ocr" in await page.inner_text("#jump-status")


async def test_find_lists_every_match_and_seeks(browser: Any, serve_app: ServeApp,
                                                viewer_data: ViewerData,
                                                tmp_path: Path) -> None:
    base = await serve_app(viewer_data.settings(tmp_path))
    page = await _open_video(browser, base, viewer_data.asset)
    await page.fill("#find-q", "gradient")
    await page.click("#find-form button")
    await page.wait_for_function(
        "() => document.getElementById('find-status').textContent.includes('match')")
    items = page.locator("#find-results li")
    texts = await items.all_inner_texts()
    assert len(texts) == 2, texts
    assert "transcript" in texts[0] and "gradient descent step" in texts[0].lower()
    assert "ocr" in texts[1] and "Gradient slide" in texts[1]
    assert await page.locator("#find-results mark").count() == 2
    await _wait_video_ready(page)
    await items.nth(1).click()
    await page.wait_for_function(
        "() => Math.abs(document.getElementById('player').currentTime - 1.5) < 0.001")
    await page.fill("#find-q", "zebra")
    await page.click("#find-form button")
    await page.wait_for_function(
        "() => document.getElementById('find-status').textContent === '0 match(es)'")


async def test_selection_changes_what_counts(browser: Any, serve_app: ServeApp,
                                             viewer_data: ViewerData, tmp_path: Path) -> None:
    base = await serve_app(viewer_data.settings(tmp_path))
    page = await _open_video(browser, base, viewer_data.asset)
    assert await page.locator("#timeline .lane[data-lane=scene] .item").count() == 3
    await page.locator("#selections").evaluate("(e) => e.closest('details').open = true")
    box = page.locator("#selections .selection[data-type=scene]")
    await box.locator("select[data-field=mode]").select_option("profile")
    await box.locator("select[data-field=profile]").select_option("high_quality")
    await box.locator("button").click()
    await page.wait_for_function(
        "() => document.querySelectorAll('#timeline .lane[data-lane=scene] .item').length === 1")
    assert "run-scenes" in await box.inner_text()
    await box.locator("select[data-field=mode]").select_option("latest")
    await box.locator("button").click()
    await page.wait_for_function(
        "() => document.querySelector('#selections .selection[data-type=scene] div.muted')"
        ".textContent.includes('run-scenes')")


async def test_exports_download_valid_files(browser: Any, serve_app: ServeApp,
                                            viewer_data: ViewerData, tmp_path: Path) -> None:
    base = await serve_app(viewer_data.settings(tmp_path))
    page = await _open_video(browser, base, viewer_data.asset)
    await page.locator("#exports").evaluate("(e) => e.closest('details').open = true")
    got: dict[str, Path] = {}
    for fmt in ("vtt", "srt", "coco", "jsonl", "zip"):
        async with page.expect_download() as info:
            await page.click(f"#exports a[data-format={fmt}]")
        download = await info.value
        path = tmp_path / f"export.{fmt}"
        await download.save_as(path)
        got[fmt] = path
    vtt = got["vtt"].read_text()
    assert vtt.startswith("WEBVTT") and "gradient descent step by step" in vtt
    assert "-->" in got["srt"].read_text()
    coco = json.loads(got["coco"].read_text())
    assert {c["name"] for c in coco["categories"]} == {"dog", "cat"}
    assert len(coco["annotations"]) == 12
    lines = [json.loads(x) for x in got["jsonl"].read_text().splitlines() if x.strip()]
    assert {x["artifact_type"] for x in lines} >= {"scene", "object.detection", "ocr.text"}
    with zipfile.ZipFile(got["zip"]) as zf:
        assert zf.testzip() is None and zf.namelist()


async def test_video_not_on_this_machine_still_shows_results(
        browser: Any, serve_app: ServeApp, viewer_data: ViewerData, tmp_path: Path) -> None:
    base = await serve_app(viewer_data.settings(tmp_path))
    page = await _open_video(browser, base, viewer_data.missing_asset)
    note = page.locator("#no-file")
    await note.wait_for()
    assert "not on this machine" in await note.inner_text()
    assert await page.locator("#timeline .lane[data-lane=scene] .item").count() == 1
    assert await page.get_attribute("#player", "src") is None
    # without the file, clicking still moves the timeline's clock
    await page.locator("#timeline .lane[data-lane=scene] .item").click()
    assert await page.inner_text("#clock") == "0:00.000"


async def test_token_protected_server_logs_in_and_plays(
        browser: Any, serve_app: ServeApp, viewer_data: ViewerData, tmp_path: Path) -> None:
    """A server with an access token: the page asks for it once; the session cookie then
    carries the API calls and the video's range requests (no token in any URL)."""
    base = await serve_app(viewer_data.settings(tmp_path), token="lab-serve-token")
    page = await browser.new_page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    await page.goto(base + "/")
    await page.locator("#login").wait_for()
    assert await page.locator("#videos").is_hidden()
    await page.fill("#login-token", "wrong")
    await page.click("#login-form button")
    await page.wait_for_function(
        "() => document.getElementById('login-error').textContent.includes('wrong')")
    await page.fill("#login-token", "lab-serve-token")
    await page.click("#login-form button")
    await page.locator(f"#video-table tr[data-asset='{viewer_data.asset}'] a").click()
    await _wait_video_ready(page)
    cookies = await browser.cookies()
    assert [c["httpOnly"] for c in cookies] == [True]
    assert "lab-serve-token" not in cookies[0]["value"]
    assert not [u for u in urls if "lab-serve-token" in u]
