"""Signaling wire protocol: message models and the JSON codec (sans-I/O).

Every frame is one JSON object in one websocket text frame, with a ``type``. Requests carry an
``id`` (1-64 printable characters chosen by the sender) that the server echoes in its reply.
Server-initiated events carry no ``id``. The full reference with examples is
``docs/protocol.md``.

Nothing here does I/O: :func:`decode_request` turns text into a typed request or raises
:class:`FrameError` (which knows the request id when one could be read, so the server can echo it);
:func:`encode` turns a model or a dict into text.

Errors (all :class:`SignalingError`, a :class:`~rtc_annotator.errors.ProtocolError`)::

    SignalingError        an ``error`` frame from the server, or a frame we cannot accept
    +-- FrameError        malformed / oversized / unknown / invalid frame (server side)
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from rtc_annotator.errors import ErrorEnvelope, ProtocolError

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024
"""Largest frame either side accepts; an SDP offer with candidates is a few KiB."""

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$")
Role = Literal["worker", "client", "admin"]
ROLES: tuple[str, ...] = ("worker", "client", "admin")


# --------------------------------------------------------------------------- error codes

class Codes:
    """Stable error codes carried by ``error`` frames."""

    MALFORMED_FRAME = "MALFORMED_FRAME"
    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    ALREADY_AUTHENTICATED = "ALREADY_AUTHENTICATED"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    TOKEN_NOT_FOUND = "TOKEN_NOT_FOUND"
    BAD_ADMIN_SECRET = "BAD_ADMIN_SECRET"
    ROOM_NOT_FOUND = "ROOM_NOT_FOUND"
    ROOM_EXISTS = "ROOM_EXISTS"
    FORBIDDEN = "FORBIDDEN"
    NOT_REGISTERED = "NOT_REGISTERED"
    WORKER_NOT_FOUND = "WORKER_NOT_FOUND"
    NO_MATCHING_WORKER = "NO_MATCHING_WORKER"
    QUEUE_FULL = "QUEUE_FULL"
    ROUTE_CANCELLED = "ROUTE_CANCELLED"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    PEER_UNAVAILABLE = "PEER_UNAVAILABLE"
    RATE_LIMITED = "RATE_LIMITED"
    REPLACED = "REPLACED"
    IDENTITY_IN_USE = "IDENTITY_IN_USE"
    TIMEOUT = "TIMEOUT"
    CONNECTION_LOST = "CONNECTION_LOST"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class SignalingError(ProtocolError):
    """An error in signaling: carries the code of the ``error`` frame it came from."""

    code = "SIGNALING_ERROR"

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> SignalingError:
        return cls(
            str(frame.get("message") or "signaling error"),
            hint=str(frame.get("hint") or ""),
            code=str(frame.get("code") or cls.code),
        )


class FrameError(SignalingError):
    """A frame the server cannot accept; ``request_id`` is echoed when it could be read."""

    def __init__(
        self, code: str, message: str, *, hint: str = "", request_id: str | None = None
    ) -> None:
        super().__init__(message, hint=hint, code=code)
        self.request_id = request_id


# --------------------------------------------------------------------------- shared pieces

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


RequestId = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$",
          description="Chosen by the sender, echoed in the reply."),
]
Name = Annotated[
    str,
    Field(pattern=NAME_RE.pattern, description="Letters, digits and ._@:- (max 64)."),
]


class StorageBackendInfo(_Model):
    """A storage backend a worker mounts: name and type only, never its local path."""

    name: Name = Field(description="Backend name; same name on two machines = same filesystem.")
    type: str = Field(default="local", max_length=32, description="nfs, vast, lustre, local...")


class GpuInfo(_Model):
    """One GPU of a worker."""

    name: str = Field(max_length=128, description="Device name, e.g. 'NVIDIA H200'.")
    memory_mb: int = Field(ge=0, description="Total device memory in MiB.")


class ModelInfo(_Model):
    """A model a worker holds: jobs name it in a pipeline's ``model`` option."""

    pipeline: Name = Field(description="The pipeline that runs it: transcript, objects, ocr.")
    name: Name = Field(description="The name jobs use, e.g. tiny.en or yolo11m.pt.")
    kind: str = Field(default="", max_length=32,
                      description="Format: faster-whisper, yolo or easyocr.")
    sha256: str = Field(default="", pattern=r"^([0-9a-f]{64})?$",
                        description="sha256 of the file (of a folder: of its files' sha256).")
    classes: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=list, max_length=1000,
        description="Class names a detector reports (objects); empty for other kinds.")

    def key(self) -> str:
        return f"{self.pipeline}/{self.name}"


class WorkerCapabilities(_Model):
    """What a worker registers: who it is and what it can run."""

    name: Name = Field(description="Worker identity in its room; re-registering replaces it.")
    storage_backends: list[StorageBackendInfo] = Field(
        default_factory=list, max_length=64, description="Backends this worker mounts."
    )
    pipelines: list[Name] = Field(
        default_factory=list, max_length=64, description="Pipelines it can actually run."
    )
    gpus: list[GpuInfo] = Field(default_factory=list, max_length=64, description="Its GPUs.")
    job_slots: int = Field(default=1, ge=1, le=64, description="Jobs it runs at once.")
    load: int = Field(default=0, ge=0, le=1024, description="Jobs running now.")
    version: str = Field(default="", max_length=64, description="Software version.")
    unavailable: dict[Name, Annotated[str, Field(max_length=500)]] = Field(
        default_factory=dict,
        max_length=64,
        description="Pipelines it cannot run, each with the reason (missing weights, ...).",
    )

    models: list[ModelInfo] = Field(
        default_factory=list, max_length=256,
        description="Models it holds for its model pipelines.",
    )

    def max_gpu_memory_mb(self) -> int:
        return max((g.memory_mb for g in self.gpus), default=0)

    def model_keys(self) -> set[str]:
        """``pipeline/name`` of every model it holds."""
        return {m.key() for m in self.models}

    def backend_names(self) -> set[str]:
        return {b.name for b in self.storage_backends}


class RoutingPolicy(_Model):
    """How a room routes jobs (set by its admin)."""

    storage: Literal["preferred", "strict"] = Field(
        default="preferred",
        description="preferred: matching backend first; strict: only workers with the backend.",
    )
    strict_backends: list[Name] = Field(
        default_factory=list,
        description="Backends always routed strictly (jobs on them go only to workers mounting "
        "them), whatever the room-wide mode.",
    )
    max_queue: int = Field(default=1000, ge=0, le=100_000, description="Queued requests per room.")
    recent_window_s: float = Field(
        default=600.0, gt=0, description="Window for the 'fewest recent jobs' tie-break."
    )
    wait_for_workers: bool = Field(
        default=False,
        description="Queue a request that no online worker could take (instead of "
        "NO_MATCHING_WORKER): for rooms whose workers `rtc-annotator pool` starts on demand.",
    )


class Requirements(_Model):
    """What a client needs from a worker."""

    pipelines: list[Name] = Field(default_factory=list, max_length=64,
                                  description="Every one must be offered by the worker.")
    required_storage: Name | None = Field(
        default=None, description="Backend holding the input; None when the file is sent."
    )
    min_gpu_memory_mb: int = Field(default=0, ge=0, description="Largest GPU must have this much.")
    strict: bool = Field(default=False, description="Only workers that mount required_storage.")
    worker: Name | None = Field(
        default=None,
        description="Route only to this worker (reattach to a job running there): it need not "
        "have a free slot and may be draining; an error when it is not online.",
    )
    exclude: list[Name] = Field(
        default_factory=list, max_length=64,
        description="Never route to these workers (e.g. one that just died mid-job).",
    )
    models: dict[Name, Name] = Field(
        default_factory=dict, max_length=64,
        description="pipeline -> model name the job asks for: only workers holding it.",
    )

    def model_keys(self) -> frozenset[str]:
        return frozenset(f"{p}/{m}" for p, m in self.models.items())


# --------------------------------------------------------------------------- requests

class Hello(_Model):
    """First frame of every connection: authenticate with a room token or the server secret."""

    type: Literal["hello"]
    id: RequestId
    token: str | None = Field(default=None, max_length=4096, description="Room token.")
    admin_secret: str | None = Field(
        default=None, max_length=4096, description="Server admin secret (room creation only)."
    )
    name: Name | None = Field(
        default=None, description="Stable peer name for clients (sessions survive a reconnect)."
    )
    protocol: int = Field(default=PROTOCOL_VERSION, description="Protocol version spoken.")


class Register(_Model):
    """Worker: register (or re-register) capabilities."""

    type: Literal["register"]
    id: RequestId
    capabilities: WorkerCapabilities


class LoadUpdate(_Model):
    """Worker: report how many jobs run now."""

    type: Literal["load"]
    id: RequestId
    load: int = Field(ge=0, le=1024, description="Jobs running now.")


class Heartbeat(_Model):
    """Any peer: keep-alive; answered by ``heartbeat_ack``."""

    type: Literal["heartbeat"]
    id: RequestId


class ListWorkers(_Model):
    """Client/admin: list the room's workers, optionally filtered."""

    type: Literal["list_workers"]
    id: RequestId
    backend: Name | None = Field(default=None, description="Only workers mounting this backend.")
    pipeline: Name | None = Field(default=None, description="Only workers offering this.")
    min_gpu_memory_mb: int = Field(default=0, ge=0, description="Only workers with this much.")


class Route(Requirements):
    """Client: ask for a worker. Answered by zero or more ``queued``, then ``routed`` or error."""

    type: Literal["route"]
    id: RequestId


class CancelRoute(_Model):
    """Client: withdraw a queued route request (by the id of that request)."""

    type: Literal["cancel_route"]
    id: RequestId
    route_id: RequestId


class SignalData(BaseModel):
    """Payload relayed verbatim to the other member: an offer, answer, candidate or bye."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["offer", "answer", "candidate", "bye"] = Field(description="What this carries.")


class Signal(BaseModel):
    """Session member: relay ``data`` to the other member. A ``from`` field is ignored."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["signal"]
    id: RequestId | None = Field(default=None, description="When set, answered by ``ok``.")
    session_id: str = Field(min_length=1, max_length=64)
    data: SignalData


class EndSession(_Model):
    """Session member: end a session; releases the worker's slot."""

    type: Literal["end_session"]
    id: RequestId
    session_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(default="", max_length=200)


class IssueToken(_Model):
    """Admin: issue a token for this room."""

    type: Literal["issue_token"]
    id: RequestId
    role: Role
    ttl_s: int = Field(default=30 * 86400, ge=1, le=10 * 365 * 86400, description="Lifetime.")
    label: str = Field(default="", max_length=100, description="Free text shown in logs.")


class RevokeToken(_Model):
    """Admin: revoke a token by its token id (``jti``); open connections using it are closed."""

    type: Literal["revoke_token"]
    id: RequestId
    token_id: str = Field(min_length=1, max_length=64)


class GetPolicy(_Model):
    """Any member: read the room's routing policy."""

    type: Literal["get_policy"]
    id: RequestId


class SetPolicy(_Model):
    """Admin: replace the room's routing policy."""

    type: Literal["set_policy"]
    id: RequestId
    policy: RoutingPolicy


class Drain(_Model):
    """Admin: stop (drain=true) or resume (false) routing new jobs to a worker."""

    type: Literal["drain"]
    id: RequestId
    worker: Name
    drain: bool = True


class Decisions(_Model):
    """Admin: recent routing decisions of the room, newest last."""

    type: Literal["decisions"]
    id: RequestId
    limit: int = Field(default=50, ge=1, le=1000)


class RouteQueue(_Model):
    """Admin: the room's queued route requests with their requirements, oldest first."""

    type: Literal["route_queue"]
    id: RequestId


class CreateRoom(_Model):
    """Server admin (hello with admin_secret): create a room; answered with its admin token."""

    type: Literal["create_room"]
    id: RequestId
    name: Name
    ttl_s: int = Field(default=365 * 86400, ge=1, le=10 * 365 * 86400)


Request = Annotated[
    Hello | Register | LoadUpdate | Heartbeat | ListWorkers | Route | CancelRoute | Signal
    | EndSession | IssueToken | RevokeToken | GetPolicy | SetPolicy | Drain | Decisions
    | CreateRoom | RouteQueue,
    Field(discriminator="type"),
]
REQUEST_TYPES: dict[str, type[BaseModel]] = {
    m.model_fields["type"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in (Hello, Register, LoadUpdate, Heartbeat, ListWorkers, Route, CancelRoute, Signal,
              EndSession, IssueToken, RevokeToken, GetPolicy, SetPolicy, Drain, Decisions,
              CreateRoom, RouteQueue)
}
_REQUEST_ADAPTER: TypeAdapter[Any] = TypeAdapter(Request)


# --------------------------------------------------------------------------- server frames

class WorkerInfo(WorkerCapabilities):
    """A worker as listed to clients: its capabilities plus server-side state."""

    sessions: int = Field(default=0, description="Sessions (reserved slots) open now.")
    free_slots: int = Field(default=0, description="job_slots - max(load, sessions).")
    draining: bool = Field(default=False, description="Admin stopped routing to it.")
    recent_jobs: int = Field(default=0, description="Jobs routed to it in the recent window.")
    online_since: float = Field(default=0.0, description="Unix time of its registration.")


class Decision(_Model):
    """Why a route request went where it went (also kept in the room's decision log)."""

    at: float = Field(description="Unix time.")
    route_id: str = Field(description="Id of the route request.")
    client: str = Field(description="Requesting peer.")
    outcome: Literal["routed", "queued", "rejected", "cancelled"]
    worker: str | None = Field(default=None, description="Chosen worker.")
    storage_match: bool | None = Field(default=None, description="Worker mounts required_storage.")
    strict: bool = Field(default=False, description="Storage requirement was strict.")
    candidates: int = Field(default=0, description="Workers that could take it now.")
    reason: str = Field(default="", description="Human-readable explanation.")
    requirements: Requirements = Field(default_factory=Requirements)


class QueuedRequest(_Model):
    """One waiting route request, as listed by ``route_queue``."""

    route_id: str = Field(description="Id of the route request.")
    client: str = Field(description="Requesting peer.")
    position: int = Field(description="1 for the next one served.")
    waiting_s: float = Field(description="Seconds since it was queued.")
    requirements: Requirements


class ErrorFrame(ErrorEnvelope):
    """``error``: a request failed, or a frame was not accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["error"] = "error"
    id: str | None = Field(default=None, description="Id of the failed request, when known.")


def error_frame(exc: SignalingError | FrameError, request_id: str | None = None) -> dict[str, Any]:
    rid = request_id if request_id is not None else getattr(exc, "request_id", None)
    frame: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message,
                             "hint": exc.hint}
    if rid is not None:
        frame["id"] = rid
    return frame


# --------------------------------------------------------------------------- codec

MAX_DEPTH = 32
"""Deepest nesting of objects/arrays accepted in a frame (relayed ``signal`` data included)."""


def _too_deep(obj: Any, limit: int) -> bool:
    """True when ``obj`` nests more than ``limit`` containers (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        children = (value.values() if isinstance(value, dict)
                    else value if isinstance(value, list) else None)
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _peek_id(obj: dict[str, Any]) -> str | None:
    rid = obj.get("id")
    if isinstance(rid, str) and 0 < len(rid) <= 64:
        return rid
    return None


def decode_request(frame: str | bytes, *, max_bytes: int = MAX_FRAME_BYTES) -> BaseModel:
    """Parse one frame from a peer into its request model, or raise :class:`FrameError`."""
    if isinstance(frame, bytes):
        raise FrameError(Codes.MALFORMED_FRAME, "binary frames are not part of the protocol",
                         hint="send JSON objects in text frames")
    if len(frame) > max_bytes or len(frame.encode("utf-8", "surrogatepass")) > max_bytes:
        raise FrameError(Codes.FRAME_TOO_LARGE, f"frame larger than {max_bytes} bytes",
                         hint="split the data or drop ICE candidates from the SDP")
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        raise FrameError(Codes.MALFORMED_FRAME, "frame is not valid JSON",
                         hint="send one JSON object per text frame") from None
    if not isinstance(obj, dict):
        raise FrameError(Codes.MALFORMED_FRAME, "frame is not a JSON object",
                         hint='send an object like {"type": "heartbeat", "id": "1"}')
    rid = _peek_id(obj)
    if _too_deep(obj, MAX_DEPTH):
        raise FrameError(Codes.INVALID_MESSAGE, f"frame nested deeper than {MAX_DEPTH} levels",
                         hint="no message of this protocol needs that", request_id=rid)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise FrameError(Codes.MALFORMED_FRAME, "frame has no string 'type'",
                         hint="every frame needs a type", request_id=rid)
    if kind not in REQUEST_TYPES:
        raise FrameError(Codes.UNKNOWN_TYPE, f"unknown message type {kind[:40]!r}",
                         hint="known types: " + ", ".join(sorted(REQUEST_TYPES)), request_id=rid)
    try:
        return _REQUEST_ADAPTER.validate_python(obj)  # type: ignore[no-any-return]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or kind
        raise FrameError(Codes.INVALID_MESSAGE, f"{kind}: {where}: {first['msg']}",
                         hint=f"see docs/protocol.md for the fields of {kind!r}",
                         request_id=rid) from None


def decode_frame(frame: str | bytes, *, max_bytes: int = MAX_FRAME_BYTES) -> dict[str, Any]:
    """Parse a frame from the server into a dict with a string ``type`` (client side)."""
    if isinstance(frame, bytes):
        raise SignalingError("server sent a binary frame", code=Codes.MALFORMED_FRAME)
    if len(frame) > max_bytes * 4:
        raise SignalingError("server frame too large", code=Codes.FRAME_TOO_LARGE)
    try:
        obj = json.loads(frame)
    except ValueError:
        raise SignalingError("server frame is not JSON", code=Codes.MALFORMED_FRAME) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise SignalingError("server frame has no type", code=Codes.MALFORMED_FRAME)
    return obj


def encode(message: BaseModel | dict[str, Any]) -> str:
    """Serialize a model or dict as one compact JSON frame."""
    if isinstance(message, BaseModel):
        return message.model_dump_json(exclude_none=False)
    return json.dumps(message, separators=(",", ":"), default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot encode {type(value).__name__}")

