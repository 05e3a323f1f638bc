"""HTTP API behaviour over a real server."""

from __future__ import annotations

import io
import zipfile

from tests.api.conftest import Api, seed_video


async def test_videos_and_artifacts(api: Api) -> None:
    asset = await seed_video(api.store)
    status, data, _, _ = await api.call("GET", "/v1/videos")
    assert status == 200 and [v["asset_id"] for v in data["videos"]] == [asset]
    status, data, _, _ = await api.call("GET", f"/v1/videos/{asset}")
    assert data["video"]["filename"] == "lecture.mp4"
    assert data["selections"]["scene"]["run_id"] == "run-2"
    status, data, _, _ = await api.call("GET", f"/v1/videos/{asset}/artifacts",
                                        params={"type": "object", "from_ms": "0"})
    assert status == 200 and len(data["artifacts"]) == 2
    status, data, _, _ = await api.call("GET", f"/v1/videos/{asset}/artifacts",
                                        params={"type": "scene", "all_runs": "true"})
    assert len(data["artifacts"]) == 2


async def test_jump_walks_simultaneous_objects(api: Api) -> None:
    asset = await seed_video(api.store)
    path = f"/v1/videos/{asset}/jump"
    status, first, _, _ = await api.call("GET", path, params={"kind": "object", "from_ms": "0"})
    assert status == 200
    cursor = first["artifact"]["artifact_id"]
    status, second, _, _ = await api.call("GET", path, params={"kind": "object",
                                                               "cursor": cursor})
    assert status == 200 and second["artifact"]["span_start_ms"] == 500
    assert second["artifact"]["artifact_id"] != cursor
    status, none, _, _ = await api.call(
        "GET", path, params={"kind": "object", "cursor": second["artifact"]["artifact_id"]})
    assert status == 404 and none["error"]["code"] == "NO_MATCH"
    status, dog, _, _ = await api.call("GET", path, params=[("kind", "object"),
                                                            ("label", "dog")])
    assert dog["artifact"]["payload"]["label"] == "dog"
    status, err, _, _ = await api.call("GET", path, params={"kind": "object", "from_ms": "x"})
    assert status == 400 and err["error"]["field"] == "from_ms"


async def test_find_and_hostile_text(api: Api) -> None:
    asset = await seed_video(api.store)
    path = f"/v1/videos/{asset}/find"
    status, data, _, _ = await api.call("GET", path, params={"q": "gradient"})
    assert status == 200 and data["match"]["source"] == "transcript"
    status, data, _, _ = await api.call("GET", path, params={"q": "gradient", "from_ms": "1000"})
    assert data["match"]["source"] == "ocr" and "[Gradient]" in data["match"]["snippet"]
    for text in ["' OR 1=1; --", '"', "", "x" * 2000, "a:b*"]:
        status, data, _, _ = await api.call("GET", path, params={"q": text})
        assert status in (200, 400, 404), text
        if status == 400:
            assert data["error"]["code"] == "QUERY_ERROR"


async def test_selection_get_and_set(api: Api) -> None:
    asset = await seed_video(api.store)
    path = f"/v1/videos/{asset}/selections/scene"
    status, data, _, _ = await api.call("GET", path)
    assert data["selection"]["mode"] == "default" and data["run_id"] == "run-2"
    status, data, _, _ = await api.call("PUT", path, json={"mode": "pinned", "run_id": "run-1"})
    assert status == 200 and data["run_id"] == "run-1"
    status, data, _, _ = await api.call("GET", f"/v1/videos/{asset}/artifacts",
                                        params={"type": "scene"})
    assert [a["run_id"] for a in data["artifacts"]] == ["run-1"]
    status, data, _, _ = await api.call("PUT", path, json={"mode": "pinned"})
    assert status == 400 and data["error"]["code"] == "BAD_REQUEST"
    status, data, _, _ = await api.call("PUT", path, data=b"{not json")
    assert status == 400
    status, data, _, _ = await api.call("PUT", f"/v1/videos/{asset}/selections/bogus",
                                        json={"mode": "latest"})
    assert status == 400 and data["error"]["code"] == "QUERY_ERROR"


async def test_exports_stream(api: Api) -> None:
    asset = await seed_video(api.store)
    status, _, body, ctype = await api.call("GET", f"/v1/videos/{asset}/export/vtt")
    assert status == 200 and ctype.startswith("text/vtt") and body.startswith(b"WEBVTT")
    status, _, body, ctype = await api.call("GET", f"/v1/videos/{asset}/export/zip")
    assert ctype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert "manifest.json" in zf.namelist() and zf.testzip() is None
    status, data, _, _ = await api.call("GET", f"/v1/videos/{asset}/export/pdf")
    assert status == 400 and data["error"]["code"] == "EXPORT_ERROR"


async def test_errors_are_envelopes(api: Api) -> None:
    for path in ["/nope", "/v1/videos/not-a-hash", "/v1/videos/" + "0" * 64,
                 "/v1/videos/" + "0" * 64 + "/jump?kind=object"]:
        status, data, _, _ = await api.call("GET", path)
        assert status == 404 and set(data["error"]) == {"code", "message", "hint", "field"}
    status, data, _, _ = await api.call("DELETE", "/v1/videos")
    assert status == 405 and data["error"]["code"] == "METHOD_NOT_ALLOWED"
