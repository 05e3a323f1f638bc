"""The export formats, each an async generator of bytes.

Only JSONL (and the ZIP bundle, which holds it) carries every artifact type, plugins' types
included. The typed formats hold one type each and say what they leave out: WebVTT in a
``NOTE`` block, COCO in ``info.skipped_artifact_types``, the bundle's manifest in ``contents``
(which member holds which type).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.store.repository import Store, check_asset_id

Exporter = Callable[[Store, str], AsyncIterator[bytes]]


class ExportError(RtcAnnotatorError):
    """An export was asked for in an unknown format."""

    code = "EXPORT_ERROR"


def _clock(ms: int, sep: str) -> str:
    h, rem = divmod(max(ms, 0), 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, milli = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{milli:03d}"


def _cue_text(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines) or "..."


TYPED_MEMBERS: dict[str, tuple[str, ...]] = {
    "transcript.segment": ("transcript.vtt", "transcript.srt"),
    "object.detection": ("detections.coco.json",),
}
"""Artifact types the typed formats export, and the bundle members that hold them."""


async def _skipped(store: Store, asset_id: str, kept: str) -> list[str]:
    """The video's artifact types a one-type format leaves out."""
    return [t for t in await store.artifact_types(asset_id) if t != kept]


async def webvtt(store: Store, asset_id: str) -> AsyncIterator[bytes]:
    """WebVTT cues of the selected transcript run (a NOTE lists the types left out)."""
    yield b"WEBVTT\n\n"
    skipped = await _skipped(store, asset_id, "transcript.segment")
    if skipped:
        note = (f"NOTE rtc-annotator: transcript.segment only; not included: "
                f"{', '.join(skipped)} (export jsonl for every artifact)\n\n")
        yield note.replace("-->", "->").encode("utf-8")
    async for e in store.iter_artifacts(asset_id, "transcript.segment"):
        text = _cue_text(e.payload["text"]).replace("-->", "->")
        cue = f"{_clock(e.span_start_ms, '.')} --> {_clock(e.span_end_ms, '.')}\n{text}\n\n"
        yield cue.encode("utf-8")


async def srt(store: Store, asset_id: str) -> AsyncIterator[bytes]:
    """SubRip cues of the selected transcript run."""
    n = 0
    async for e in store.iter_artifacts(asset_id, "transcript.segment"):
        n += 1
        text = _cue_text(e.payload["text"])
        cue = f"{n}\n{_clock(e.span_start_ms, ',')} --> {_clock(e.span_end_ms, ',')}\n{text}\n\n"
        yield cue.encode("utf-8")


async def coco(store: Store, asset_id: str) -> AsyncIterator[bytes]:
    """COCO detection JSON of the selected object run: one image per frame time.

    ``bbox`` is ``[x, y, w, h]`` in pixels when the video's size is known (from a
    ``video.metadata`` artifact), else normalised to 0..1 (``info.bbox_normalised``).
    """
    width = height = None
    for m in await store.artifacts(asset_id, "video.metadata", limit=1):
        width, height = m.payload["width"], m.payload["height"]
    sx, sy = (width or 1), (height or 1)
    images: dict[int, int] = {}
    categories: dict[str, int] = {}
    annotations: list[dict[str, Any]] = []
    async for e in store.iter_artifacts(asset_id, "object.detection"):
        p = e.payload
        image_id = images.setdefault(p["frame_pts_ms"], len(images) + 1)
        cat = categories.setdefault(p["label"], len(categories) + 1)
        b = p["box"]
        w, h = (b["x2"] - b["x1"]) * sx, (b["y2"] - b["y1"]) * sy
        annotations.append({
            "id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
            "bbox": [b["x1"] * sx, b["y1"] * sy, w, h], "area": w * h, "iscrowd": 0,
            "score": p["confidence"], "track_id": p.get("track_id"),
            "artifact_id": e.artifact_id,
        })
    doc = {
        "info": {"description": f"rtc-annotator detections of {asset_id}",
                 "date_created": datetime.now(UTC).isoformat(),
                 "bbox_normalised": width is None,
                 "skipped_artifact_types": await _skipped(store, asset_id, "object.detection"),
                 "note": "object.detection only; export jsonl for every artifact"},
        "images": [{"id": i, "file_name": f"frame_{pts:010d}.jpg", "frame_pts_ms": pts,
                    "width": width, "height": height} for pts, i in images.items()],
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "object"}
                       for name, i in categories.items()],
    }
    yield json.dumps(doc, indent=1).encode("utf-8")


async def jsonl(store: Store, asset_id: str) -> AsyncIterator[bytes]:
    """Every envelope of the video (all runs), one JSON object per line."""
    async for e in store.iter_artifacts(asset_id, apply_selection=False):
        yield (json.dumps(e.model_dump(mode="json"), sort_keys=True) + "\n").encode("utf-8")


BUNDLE_MEMBERS: tuple[tuple[str, Exporter], ...] = (
    ("transcript.vtt", webvtt),
    ("transcript.srt", srt),
    ("detections.coco.json", coco),
    ("artifacts.jsonl", jsonl),
)


class _Sink:
    """A write-only, unseekable file that zipfile writes into; drained after each write."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


async def zip_bundle(store: Store, asset_id: str) -> AsyncIterator[bytes]:
    """A ZIP of every format plus ``manifest.json`` (sizes and sha256 of each member)."""
    sink = _Sink()
    manifest: dict[str, Any] = {
        "asset": await store.get_asset(asset_id),
        "generated_at": datetime.now(UTC).isoformat(),
        "selections": {},
        "contents": {},
        "files": {},
    }
    for atype in await store.artifact_types(asset_id):
        manifest["contents"][atype] = [*TYPED_MEMBERS.get(atype, ()), "artifacts.jsonl"]
        sel = await store.get_selection(asset_id, atype)
        manifest["selections"][atype] = {**sel.model_dump(),
                                         "run_id": await store.selected_run(asset_id, atype)}
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:  # type: ignore[call-overload]
        for name, exporter in BUNDLE_MEMBERS:
            digest, size = hashlib.sha256(), 0
            with zf.open(name, "w", force_zip64=True) as member:
                async for chunk in exporter(store, asset_id):
                    member.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    data = sink.drain()
                    if data:
                        yield data
            manifest["files"][name] = {"bytes": size, "sha256": digest.hexdigest()}
            yield sink.drain()
        zf.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    yield sink.drain()


FORMATS: dict[str, tuple[Exporter, str, str]] = {
    "vtt": (webvtt, "text/vtt; charset=utf-8", "vtt"),
    "srt": (srt, "application/x-subrip; charset=utf-8", "srt"),
    "coco": (coco, "application/json", "coco.json"),
    "jsonl": (jsonl, "application/x-ndjson", "jsonl"),
    "zip": (zip_bundle, "application/zip", "zip"),
}


def export(store: Store, asset_id: str, fmt: str) -> AsyncIterator[bytes]:
    """The byte stream of ``fmt`` for a video; raises :class:`ExportError` for unknown formats."""
    check_asset_id(asset_id)
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}", hint="formats: " + ", ".join(FORMATS))
    return FORMATS[fmt][0](store, asset_id)
