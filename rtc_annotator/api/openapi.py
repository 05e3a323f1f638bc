"""The OpenAPI 3.1 document served at ``/openapi.json`` (kept in step with ``app.ROUTES``)."""

from __future__ import annotations

from typing import Any

from rtc_annotator import __version__
from rtc_annotator.artifacts.envelope import ArtifactEnvelope
from rtc_annotator.store.selection import Selection


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or list(props)}


def _q(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}


ASSET = {"name": "asset_id", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
         "description": "sha256 hex of the video bytes."}
TYPE_PATH = {"name": "artifact_type", "in": "path", "required": True,
             "schema": {"type": "string"},
             "description": "Artifact type or kind (scene, object, transcript, ocr, ...)."}
STR = {"type": "string"}
INT = {"type": "integer"}
DIRECTION = _q("direction", {"type": "string", "enum": ["next", "prev"], "default": "next"},
               "Search forwards (next) or backwards (prev).")
FROM_MS = _q("from_ms", {"type": "integer", "default": 0},
             "Position in ms; answers start strictly after (next) / before (prev) it.")
CURSOR = _q("cursor", STR, "artifact_id of the previous answer: continue from it in "
            "(start, end, id) order, so simultaneous artifacts are each reached.")
NOT_FOUND = _err("Unknown video (NOT_FOUND).")
BAD = _err("Malformed parameter (BAD_REQUEST, QUERY_ERROR, ...).")


def _schemas() -> dict[str, Any]:
    error = _obj({"error": _obj({"code": STR, "message": STR, "hint": STR,
                                 "field": {"type": ["string", "null"]}})})
    video = {"type": "object", "required": ["asset_id", "filename", "artifact_counts"],
             "properties": {"asset_id": STR, "filename": STR,
                            "size_bytes": {"type": ["integer", "null"]},
                            "duration_ms": {"type": ["integer", "null"]},
                            "fps": {"type": ["number", "null"]},
                            "variable_frame_rate": {"type": ["boolean", "null"]},
                            "created_at": STR,
                            "artifact_counts": {"type": "object",
                                                "additionalProperties": INT}}}
    match = _obj({"artifact_id": STR, "source": {"type": "string", "enum": ["transcript", "ocr"]},
                  "start_ms": INT, "end_ms": INT, "text": STR, "snippet": STR})
    selection_state = _obj({"artifact_type": STR, "selection": _ref("Selection"),
                            "run_id": {"type": ["string", "null"]}})
    return {
        "Error": error,
        "Envelope": ArtifactEnvelope.model_json_schema(mode="serialization"),
        "Selection": Selection.model_json_schema(),
        "Video": video,
        "FindMatch": match,
        "SelectionState": selection_state,
    }


def openapi_document() -> dict[str, Any]:
    v = "/v1/videos/{asset_id}"
    return {
        "openapi": "3.1.0",
        "info": {"title": "rtc-annotator store API", "version": __version__,
                 "description": "Read the artifact store: videos, artifacts, jump, find, "
                                "selections, exports. Errors are {error: {code, message, hint, "
                                "field}}."},
        "paths": {
            "/health": {"get": {"operationId": "health", "responses": {
                "200": _json(_obj({"status": STR}), "The server is up.")}}},
            "/openapi.json": {"get": {"operationId": "openapi", "responses": {
                "200": _json({"type": "object"}, "This document.")}}},
            "/v1/videos": {"get": {"operationId": "listVideos", "responses": {
                "200": _json(_obj({"videos": {"type": "array", "items": _ref("Video")}}),
                             "Every video in the store.")}}},
            v: {"get": {"operationId": "getVideo", "parameters": [ASSET], "responses": {
                "200": _json(_obj({"video": _ref("Video"), "runs": {"type": "array"},
                                   "selections": {"type": "object"}}),
                             "The video, its runs and the selection per artifact type."),
                "404": NOT_FOUND}}},
            v + "/artifacts": {"get": {"operationId": "listArtifacts", "parameters": [
                ASSET,
                _q("type", STR, "Artifact type or kind."),
                _q("from_ms", INT, "Keep artifacts ending at or after this time."),
                _q("to_ms", INT, "Keep artifacts starting at or before this time."),
                _q("run_id", STR, "Only this run (overrides the selection)."),
                _q("profile", STR, "Only this model profile."),
                _q("all_runs", {"type": "string", "enum": ["true", "false"]},
                   "true: every run, no selection."),
                _q("limit", {"type": "integer", "minimum": 1, "maximum": 10000,
                             "default": 1000}, "At most this many."),
            ], "responses": {
                "200": _json(_obj({"artifacts": {"type": "array", "items": _ref("Envelope")}}),
                             "Artifacts ordered by (start, end, id)."),
                "400": BAD, "404": NOT_FOUND}}},
            v + "/jump": {"get": {"operationId": "jump", "parameters": [
                ASSET,
                _q("kind", STR, "scene, object, transcript, ocr or a type name.", True),
                FROM_MS, DIRECTION, CURSOR,
                _q("label", STR, "Object label; repeat for several (kind=object only)."),
                _q("min_confidence", {"type": "number", "minimum": 0, "maximum": 1},
                   "Minimum confidence."),
            ], "responses": {
                "200": _json(_obj({"artifact": _ref("Envelope")}), "The next/previous one."),
                "400": BAD, "404": _err("Unknown video (NOT_FOUND) or none there (NO_MATCH).")}}},
            v + "/find": {"get": {"operationId": "find", "parameters": [
                ASSET,
                _q("q", STR, "Text; quoted parts are phrases, all words must match.", True),
                FROM_MS, DIRECTION, CURSOR,
                _q("source", {"type": "string", "enum": ["transcript", "ocr", "all"],
                              "default": "all"}, "Where to search."),
            ], "responses": {
                "200": _json(_obj({"match": _ref("FindMatch")}), "The next/previous match."),
                "400": BAD, "404": _err("Unknown video (NOT_FOUND) or no match (NO_MATCH).")}}},
            v + "/profiles": {"get": {"operationId": "profiles", "parameters": [
                ASSET, _q("type", STR, "Artifact type or kind.")], "responses": {
                "200": _json(_obj({"profiles": {"type": "array", "items": STR}}),
                             "Model profiles with results."),
                "400": BAD, "404": NOT_FOUND}}},
            v + "/metadata": {"get": {"operationId": "metadata", "parameters": [ASSET],
                                      "responses": {
                "200": _json(_obj({"metadata": {"type": "object"}, "artifact_id": STR}),
                             "The selected video.metadata payload."),
                "404": _err("Unknown video or no metadata (NO_MATCH).")}}},
            v + "/selections/{artifact_type}": {
                "get": {"operationId": "getSelection", "parameters": [ASSET, TYPE_PATH],
                        "responses": {
                    "200": _json(_ref("SelectionState"), "Policy and the run it selects."),
                    "400": BAD, "404": NOT_FOUND}},
                "put": {"operationId": "setSelection", "parameters": [ASSET, TYPE_PATH],
                        "requestBody": {"required": True, "content": {
                            "application/json": {"schema": _ref("Selection")}}},
                        "responses": {
                    "200": _json(_ref("SelectionState"), "The stored policy."),
                    "400": BAD, "404": NOT_FOUND}}},
            v + "/export/{format}": {"get": {"operationId": "export", "parameters": [
                ASSET, {"name": "format", "in": "path", "required": True,
                        "schema": {"type": "string",
                                   "enum": ["vtt", "srt", "coco", "jsonl", "zip"]},
                        "description": "Export format."}],
                "responses": {
                    "200": {"description": "The export, streamed.", "content": {
                        "text/vtt": {}, "application/x-subrip": {}, "application/json": {},
                        "application/x-ndjson": {}, "application/zip": {}}},
                    "400": _err("Unknown format (EXPORT_ERROR)."), "404": NOT_FOUND}}},
        },
        "components": {"schemas": _schemas()},
    }
