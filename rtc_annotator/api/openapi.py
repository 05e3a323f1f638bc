"""The OpenAPI 3.1 document served at ``/openapi.json`` (kept in step with ``app.ROUTES``)."""

from __future__ import annotations

from typing import Any

from rtc_annotator import __version__
from rtc_annotator.api.jobs import JobRequest
from rtc_annotator.api.room import DrainRequest, PolicyPatch, TokenRequest
from rtc_annotator.artifacts.envelope import ArtifactEnvelope
from rtc_annotator.client.jobs import JobRecord, JobStatus
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
JOB = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"},
       "description": "Job id (as `rtc-annotator jobs list` shows it)."}
ROOM_TOKEN = {"name": "X-Room-Token", "in": "header", "required": True,
              "schema": {"type": "string"},
              "description": "The room admin token (never put it in a URL)."}
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
    live = {"type": ["object", "null"], "properties": {
        "phase": STR, "queue_position": {"type": ["integer", "null"]},
        "worker": {"type": ["string", "null"]}, "decision": STR,
        "upload": _obj({"done": INT, "total": INT, "mb_per_s": {"type": ["number", "null"]},
                        "eta_s": {"type": ["number", "null"]}}),
        "progress": {"type": "object", "additionalProperties": {"type": "number"}},
        "artifacts": INT, "error": {"type": ["object", "null"]},
        "ok": {"type": ["boolean", "null"]}, "running": {"type": "boolean"}},
        "required": ["phase", "queue_position", "upload", "progress", "running"]}
    record = JobRecord.model_json_schema(mode="serialization")
    status = {"type": "string", "enum": [s.value for s in JobStatus],
              "description": "Last known status."}
    job = {"type": "object", "required": ["job_id", "video", "status", "pipelines", "live"],
           "properties": {**record["properties"], "status": status, "live": live,
                          "seq": {"type": "integer", "description": "Grows with every view "
                                  "this server makes: keep the job with the highest."}},
           "description": "A job of the local registry, with live state while serve runs it."}
    worker = {"type": "object", "required": ["name", "pipelines", "job_slots", "free_slots",
                                             "load", "draining"]}
    decision = {"type": "object", "required": ["at", "route_id", "client", "outcome", "reason"]}
    room = _obj({"room": STR, "workers": {"type": "array", "items": worker},
                 "policy": {"type": "object"},
                 "queue": {"type": "array", "items": _obj({
                     "position": INT, "client": STR, "route_id": STR, "since": {"type": "number"},
                     "requirements": {"type": "object"}, "reason": STR})},
                 "decisions": {"type": "array", "items": decision}})
    return {
        "Job": job,
        "JobRequest": JobRequest.model_json_schema(),
        "Room": room,
        "TokenRequest": TokenRequest.model_json_schema(),
        "DrainRequest": DrainRequest.model_json_schema(),
        "PolicyPatch": PolicyPatch.model_json_schema(),
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
                                "selections, exports, the video file; submit and follow jobs "
                                "(serve acts as the client); the room dashboard (admin token "
                                "in X-Room-Token). Errors are {error: {code, message, hint, "
                                "field}}. State changes only on POST/PUT/DELETE, refused "
                                "cross-origin (CROSS_ORIGIN). With an access token, every "
                                "route under /v1 but /v1/login needs Authorization: Bearer "
                                "TOKEN or the session cookie."},
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
            v + "/media": {"get": {"operationId": "media", "parameters": [
                ASSET, {"name": "Range", "in": "header", "required": False, "schema": STR,
                        "description": "bytes=START-END: a part of the file (206)."}],
                "responses": {
                    "200": {"description": "The whole video file, from the path recorded for "
                                           "this asset (sha256 checked).",
                            "content": {"video/mp4": {}}},
                    "206": {"description": "The requested byte range.",
                            "content": {"video/mp4": {}}},
                    "404": _err("Unknown video (NOT_FOUND), or its file is not on this "
                                "machine (VIDEO_NOT_HERE).")}}},
            "/v1/login": {"post": {"operationId": "login", "requestBody": {
                "required": True, "content": {"application/json": {"schema": _obj(
                    {"token": STR})}}}, "responses": {
                "200": _json(_obj({"login": STR}), "Logged in: sets the HttpOnly session "
                             "cookie (or 'not needed' when the server has no token)."),
                "401": _err("Wrong token (UNAUTHORIZED).")}}},
            "/v1/jobs": {
                "get": {"operationId": "listJobs", "responses": {
                    "200": _json(_obj({"jobs": {"type": "array", "items": _ref("Job")}}),
                                 "Jobs of the local registry (the ones `jobs list --all` "
                                 "shows), newest first.")}},
                "post": {"operationId": "submitJob", "requestBody": {
                    "required": True, "content": {"application/json": {
                        "schema": _ref("JobRequest")}}}, "responses": {
                    "202": _json(_obj({"job": _ref("Job")}), "Accepted: the job runs in "
                                 "serve (follow it on /v1/jobs/events)."),
                    "400": _err("Bad body or video path (BAD_REQUEST, VIDEO_ERROR)."),
                    "403": _err("Cross-origin request (CROSS_ORIGIN)."),
                    "503": _err("No signaling token configured (NOT_CONFIGURED).")}}},
            "/v1/jobs/events": {"get": {"operationId": "jobEvents", "parameters": [
                _q("follow", {"type": "string", "enum": ["true", "false"], "default": "true"},
                   "false: send every job once and end.")], "responses": {
                "200": {"description": "Server-sent events: `event: job` with a Job as data, "
                                       "every job first, then one per change.",
                        "content": {"text/event-stream": {}}}}}},
            "/v1/jobs/{job_id}": {
                "get": {"operationId": "getJob", "parameters": [JOB], "responses": {
                    "200": _json(_obj({"job": _ref("Job")}), "The job."),
                    "404": _err("No such job here (UNKNOWN_JOB).")}},
                "delete": {"operationId": "cancelJob", "parameters": [JOB], "responses": {
                    "200": _json(_obj({"job": _ref("Job")}), "Cancelled (what it produced so "
                                 "far is stored)."),
                    "404": _err("No such job here (UNKNOWN_JOB)."),
                    "409": _err("The job already ended (JOB_ENDED).")}}},
            "/v1/room": {"get": {"operationId": "room", "parameters": [ROOM_TOKEN],
                                 "responses": {
                "200": _json(_ref("Room"), "Workers, route queue, recent decisions, policy."),
                "401": _err("No admin token (UNAUTHORIZED)."),
                "403": _err("Not a valid admin token (FORBIDDEN).")}}},
            "/v1/room/policy": {"put": {"operationId": "setPolicy", "parameters": [ROOM_TOKEN],
                                        "requestBody": {"required": True, "content": {
                                            "application/json": {
                                                "schema": _ref("PolicyPatch")}}},
                                        "responses": {
                "200": _json(_obj({"policy": {"type": "object"}}), "The stored policy."),
                "400": BAD, "401": _err("No admin token (UNAUTHORIZED).")}}},
            "/v1/room/workers/{worker}/drain": {"post": {
                "operationId": "drainWorker", "parameters": [
                    ROOM_TOKEN, {"name": "worker", "in": "path", "required": True,
                                 "schema": STR, "description": "Worker name."}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("DrainRequest")}}},
                "responses": {
                    "200": _json(_obj({"worker": STR, "draining": {"type": "boolean"},
                                       "online": {"type": "boolean"}}), "Done."),
                    "403": _err("Not an admin token (FORBIDDEN), or cross-origin.")}}},
            "/v1/room/tokens": {"post": {"operationId": "issueToken",
                                         "parameters": [ROOM_TOKEN],
                                         "requestBody": {"required": True, "content": {
                                             "application/json": {
                                                 "schema": _ref("TokenRequest")}}},
                                         "responses": {
                "201": _json(_obj({"room": STR, "role": STR, "token": STR, "token_id": STR,
                                   "expires_at": {"type": "number"}}),
                             "The new token (shown once)."),
                "400": BAD}}},
            "/v1/room/tokens/{token_id}": {"delete": {
                "operationId": "revokeToken", "parameters": [
                    ROOM_TOKEN, {"name": "token_id", "in": "path", "required": True,
                                 "schema": STR, "description": "The token's id."}],
                "responses": {
                    "200": _json(_obj({"token_id": STR, "closed_connections": INT}),
                                 "Revoked; connections using it were closed."),
                    "404": _err("No such token in this room (TOKEN_NOT_FOUND).")}}},
        },
        "components": {"schemas": _schemas()},
    }
