"""Exporters: WebVTT and SRT (transcript), COCO JSON (detections), JSONL, ZIP bundle.

Each exporter is an async generator of ``bytes`` over the store, so the HTTP API and the CLI
stream the output instead of building it in memory (COCO is built per video in memory, as its
JSON needs the images before the annotations). Transcript and COCO use the selected run of the
type; JSONL holds every envelope of the video (all runs); the bundle holds all of them plus
``manifest.json``.
"""

from rtc_annotator.exporters.formats import (
    FORMATS,
    ExportError,
    coco,
    export,
    jsonl,
    srt,
    webvtt,
    zip_bundle,
)

__all__ = ["FORMATS", "ExportError", "coco", "export", "jsonl", "srt", "webvtt", "zip_bundle"]
