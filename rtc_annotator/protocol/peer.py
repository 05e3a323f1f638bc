"""Peer protocol between a client and a worker over WebRTC data channels (sans-I/O).

Two channels carry it: ``control`` (reliable, ordered) carries msgpack maps with a ``type`` field,
one message per data channel message; ``bulk`` (reliable, ordered) carries binary file chunks
framed by :func:`pack_chunk`. This module does no I/O: it defines the messages, the codec, the
chunk framing, version negotiation, the shared-input fingerprint and the job / transfer state
machines. :mod:`rtc_annotator.transport` moves the bytes.

Errors::

    ProtocolError (rtc_annotator.errors)   malformed, oversized or unknown message   PROTOCOL_ERROR
    +-- InvalidTransition                  state change not allowed                  INVALID_STATE

Message types (exact strings): HELLO, JOB_REQUEST, JOB_ACCEPTED, BACKEND_NOT_AVAILABLE,
PATH_ERROR, JOB_REJECTED, TRANSFER_OFFER, TRANSFER_STATUS, TRANSFER_DONE, PROGRESS,
ARTIFACT_BATCH, ARTIFACT_ACK, JOB_DONE, JOB_FAILED, CANCEL, ATTACH, JOB_MOVED, PING, PONG,
AUTH_CHALLENGE, AUTH_PROOF. See docs/transport.md for the flows and :mod:`.auth` for the proofs.
"""

from __future__ import annotations

import enum
import hashlib
import os
import struct
import zlib
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgpack
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from rtc_annotator.errors import ErrorEnvelope, ProtocolError
from rtc_annotator.logs import get_logger

PROTOCOL_VERSION = 1
"""The newest peer protocol version this code speaks."""
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
"""Every peer protocol version this code speaks."""
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Default upper bound of one encoded control message."""
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Job ids are plain names (they name outbox folders on the worker)."""
FINGERPRINT_WINDOW = 1024 * 1024
"""Bytes hashed at each end of a shared input by :func:`fingerprint_file`."""

_log = get_logger(__name__)


class InvalidTransition(ProtocolError):
    """A state machine was asked for a transition its table does not allow."""

    code = "INVALID_STATE"


# --------------------------------------------------------------------------- messages


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hello(_Msg):
    """First message each side sends on the control channel."""

    type: Literal["HELLO"] = "HELLO"
    versions: list[int] = Field(description="Protocol versions the sender speaks.")
    role: Literal["client", "worker"] = Field(description="What the sender is.")
    name: str = Field(default="", description="Human-readable name of the sender.")
    software: str = Field(default="", description="Software version of the sender.")


class SharedInput(_Msg):
    """A file both sides reach on the same shared storage backend."""

    transfer: Literal["shared"] = Field(default="shared", description="Input kind tag.")
    storage_backend: str = Field(description="Backend name, e.g. vast.")
    user_subdir: str = Field(default="", description="User directory under the base path.")
    relative_path: str = Field(description="Path under user_subdir, '/' separators.")
    size: int = Field(ge=0, description="File size in bytes as the client sees it.")
    fingerprint: str = Field(description="fingerprint_file() of the file on the client side.")


class RtcInput(_Msg):
    """A file the client sends over the bulk channel."""

    transfer: Literal["rtc"] = Field(default="rtc", description="Input kind tag.")
    name: str = Field(description="Original file name (sanitised by the receiver).")
    size: int = Field(ge=0, description="File size in bytes.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the whole file, hex.")


JobInput = Annotated[SharedInput | RtcInput, Field(discriminator="transfer")]


class JobRequest(_Msg):
    """Client asks the worker to run pipelines over one input."""

    type: Literal["JOB_REQUEST"] = "JOB_REQUEST"
    job_id: str = Field(pattern=JOB_ID_PATTERN, description="Client-chosen unique job id.")
    pipelines: dict[str, dict[str, Any]] = Field(
        description="Pipeline name -> its options (empty map for defaults)."
    )
    model_profile: str = Field(default="balanced", description="fast, balanced or high_quality.")
    input: JobInput = Field(description="Where the video comes from.")


class JobAccepted(_Msg):
    """Worker took the job."""

    type: Literal["JOB_ACCEPTED"] = "JOB_ACCEPTED"
    job_id: str = Field(description="The job.")
    queue_position: int = Field(ge=0, description="Jobs ahead of this one (0: runs now).")
    needs_transfer: bool = Field(
        default=False, description="True when the worker waits for the file over the bulk channel."
    )


class BackendNotAvailable(_Msg):
    """Worker does not mount the requested storage backend."""

    type: Literal["BACKEND_NOT_AVAILABLE"] = "BACKEND_NOT_AVAILABLE"
    job_id: str = Field(description="The job.")
    storage_backend: str = Field(description="The backend the worker lacks.")
    message: str = Field(default="", description="Human-readable explanation.")


PathReason = Literal["missing", "escape", "invalid", "size_mismatch", "fingerprint_mismatch"]


class PathErrorMsg(_Msg):
    """The shared path could not be used on the worker."""

    type: Literal["PATH_ERROR"] = "PATH_ERROR"
    job_id: str = Field(description="The job.")
    reason: PathReason = Field(description="Why the path was refused.")
    message: str = Field(default="", description="Human-readable explanation (no local paths).")


class JobRejected(_Msg):
    """Worker refuses the job for a reason other than the input location."""

    type: Literal["JOB_REJECTED"] = "JOB_REJECTED"
    job_id: str = Field(description="The job.")
    error: ErrorEnvelope = Field(description="Why: code, message, hint.")


class TransferOffer(_Msg):
    """Sender announces (or re-announces after a drop) a file for the bulk channel."""

    type: Literal["TRANSFER_OFFER"] = "TRANSFER_OFFER"
    transfer_no: int = Field(ge=0, lt=2**32, description="Chunk-frame id, unique on this link.")
    job_id: str = Field(description="Job the file is for.")
    name: str = Field(description="Original file name.")
    size: int = Field(ge=0, description="File size in bytes.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the file, hex.")


class TransferStatus(_Msg):
    """Receiver says where the sender must (re)start, that it has it all, or why it failed."""

    type: Literal["TRANSFER_STATUS"] = "TRANSFER_STATUS"
    transfer_no: int = Field(description="The transfer.")
    sha256: str = Field(description="The file.")
    have_bytes: int = Field(ge=0, description="Verified bytes the receiver holds; send from here.")
    complete: bool = Field(default=False, description="The receiver holds the verified file.")
    error: ErrorEnvelope | None = Field(default=None, description="Set when the transfer failed.")


class TransferDone(_Msg):
    """Sender has queued the last chunk."""

    type: Literal["TRANSFER_DONE"] = "TRANSFER_DONE"
    transfer_no: int = Field(description="The transfer.")
    sent_bytes: int = Field(ge=0, description="Bytes sent on this link for it.")


class Progress(_Msg):
    """Progress of a job stage, for progress bars."""

    type: Literal["PROGRESS"] = "PROGRESS"
    job_id: str = Field(description="The job.")
    stage: str = Field(description="transfer, queued, or a pipeline name.")
    fraction: float = Field(ge=0.0, le=1.0, description="Done fraction of the stage.")
    bytes: int | None = Field(default=None, description="Bytes done, for transfers.")
    rate: float | None = Field(default=None, description="Bytes or items per second.")


class ArtifactBatch(_Msg):
    """A batch of artifact envelopes, numbered per job from 1."""

    type: Literal["ARTIFACT_BATCH"] = "ARTIFACT_BATCH"
    job_id: str = Field(description="The job.")
    seq: int = Field(ge=1, description="Sequence number of the batch within the job.")
    envelopes: list[dict[str, Any]] = Field(description="Artifact envelopes as dicts.")


class ArtifactAck(_Msg):
    """Client stored every batch up to and including ``seq``."""

    type: Literal["ARTIFACT_ACK"] = "ARTIFACT_ACK"
    job_id: str = Field(description="The job.")
    seq: int = Field(ge=0, description="Highest batch stored.")
    final: bool = Field(
        default=False, description="Also acknowledges the JOB_DONE/JOB_FAILED; outbox may go."
    )


class GateSummary(_Msg):
    """What a pipeline's change gate did over one job."""

    frames: int = Field(ge=0, description="Sampled frames compared.")
    full_reads: int = Field(ge=0, description="Frames the model read whole.")
    band_reads: int = Field(ge=0, description="Frames of which the model read only a band.")
    calls_saved: int = Field(ge=0, description="Frames not read at all (model calls saved).")
    compare_s: float = Field(ge=0, description="Seconds spent comparing frames.")


class PipelineStats(_Msg):
    """Counts and timings of one pipeline."""

    artifacts: int = Field(ge=0, description="Artifacts emitted.")
    seconds: float = Field(ge=0, description="Wall time of the pipeline.")
    gate: GateSummary | None = Field(
        default=None, description="What the pipeline's change gate did (ocr; objects with "
        "gate on); nil without a gate.")


class JobDone(_Msg):
    """Job finished; every batch up to ``last_seq`` was sent."""

    type: Literal["JOB_DONE"] = "JOB_DONE"
    job_id: str = Field(description="The job.")
    last_seq: int = Field(ge=0, description="Sequence number of the last batch (0: none).")
    pipelines: dict[str, PipelineStats] = Field(
        default_factory=dict, description="Per-pipeline counts and timings."
    )
    transfer: Literal["shared", "rtc", "cached"] = Field(description="How the input arrived.")


class JobFailed(_Msg):
    """Job failed; batches up to ``last_seq`` were sent before."""

    type: Literal["JOB_FAILED"] = "JOB_FAILED"
    job_id: str = Field(description="The job.")
    last_seq: int = Field(default=0, ge=0, description="Sequence number of the last batch.")
    error: ErrorEnvelope = Field(description="code, message, hint.")


class Cancel(_Msg):
    """Client asks to stop a job."""

    type: Literal["CANCEL"] = "CANCEL"
    job_id: str = Field(description="The job.")


class Attach(_Msg):
    """Client (re)attaches to a job on this link; batches after ``last_acked_seq`` are replayed."""

    type: Literal["ATTACH"] = "ATTACH"
    job_id: str = Field(pattern=JOB_ID_PATTERN, description="The job.")
    last_acked_seq: int = Field(ge=0, description="Highest batch the client has stored.")


class JobMoved(_Msg):
    """Worker tells a link that the job's stream moved to another link of the same owner."""

    type: Literal["JOB_MOVED"] = "JOB_MOVED"
    job_id: str = Field(description="The job.")
    message: str = Field(default="", description="Human-readable explanation.")


class AuthChallenge(_Msg):
    """Sent by each side right after HELLO: a fresh nonce the other side must sign over."""

    type: Literal["AUTH_CHALLENGE"] = "AUTH_CHALLENGE"
    nonce: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$",
                       description="32 random bytes, base64url without padding.")


class AuthProof(_Msg):
    """Answer to the peer's AUTH_CHALLENGE: the sender's key proven over this connection."""

    type: Literal["AUTH_PROOF"] = "AUTH_PROOF"
    public_key: str | None = Field(
        default=None, description="'ed25519:' + base64url key; null: the sender has no key.")
    signature: str = Field(default="", description="Ed25519 signature of the transcript.")
    vouch: str | None = Field(
        default=None, description="Room admin's vouch for public_key (workers), or null.")


class Ping(_Msg):
    """Application heartbeat."""

    type: Literal["PING"] = "PING"
    nonce: int = Field(description="Echoed in the PONG.")


class Pong(_Msg):
    """Answer to PING."""

    type: Literal["PONG"] = "PONG"
    nonce: int = Field(description="The PING's nonce.")


class Error(_Msg):
    """Protocol-level error not tied to a job (bad message, no common version)."""

    type: Literal["ERROR"] = "ERROR"
    error: ErrorEnvelope = Field(description="code, message, hint.")


PeerMessage = Annotated[
    Hello
    | JobRequest
    | JobAccepted
    | BackendNotAvailable
    | PathErrorMsg
    | JobRejected
    | TransferOffer
    | TransferStatus
    | TransferDone
    | Progress
    | ArtifactBatch
    | ArtifactAck
    | JobDone
    | JobFailed
    | Cancel
    | Attach
    | JobMoved
    | AuthChallenge
    | AuthProof
    | Ping
    | Pong
    | Error,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[PeerMessage] = TypeAdapter(PeerMessage)
MESSAGE_TYPES: frozenset[str] = frozenset(
    m.model_fields["type"].default
    for m in (
        Hello, JobRequest, JobAccepted, BackendNotAvailable, PathErrorMsg, JobRejected,
        TransferOffer, TransferStatus, TransferDone, Progress, ArtifactBatch, ArtifactAck,
        JobDone, JobFailed, Cancel, Attach, JobMoved, AuthChallenge, AuthProof, Ping, Pong,
        Error,
    )
)


# --------------------------------------------------------------------------- codec


def encode(message: BaseModel) -> bytes:
    """One message as msgpack bytes."""
    return msgpack.packb(message.model_dump(mode="json"), use_bin_type=True)  # type: ignore[no-any-return]


def decode(data: bytes | str, *, max_size: int = MAX_MESSAGE_BYTES) -> PeerMessage:
    """Parse one control message; any defect raises :class:`ProtocolError` with a code."""
    if isinstance(data, str):
        raise ProtocolError("control message is text, expected msgpack bytes",
                            hint="send binary msgpack frames on the control channel")
    if len(data) > max_size:
        raise ProtocolError(f"control message of {len(data)} bytes exceeds {max_size}",
                            hint="split artifacts into smaller batches")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        kind_name = type(exc).__name__
        raise ProtocolError(f"control message is not valid msgpack ({kind_name})") from None
    if not isinstance(obj, dict):
        raise ProtocolError("control message is not a map")
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:  # a list/map type is unhashable
        raise ProtocolError(f"unknown message type {str(kind)[:40]!r}",
                            hint=f"known types: {', '.join(sorted(MESSAGE_TYPES))}")
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "message"
        raise ProtocolError(f"invalid {kind}: {where}: {first['msg']}") from None


def negotiate_version(ours: tuple[int, ...] | list[int], theirs: list[int]) -> int:
    """Highest version both sides speak, or :class:`ProtocolError`."""
    common = set(ours) & set(theirs)
    if not common:
        raise ProtocolError(
            f"no common peer protocol version (ours {sorted(ours)}, theirs {sorted(theirs)})",
            hint="upgrade the older side of the connection",
            code="VERSION_MISMATCH",
        )
    return max(common)


# --------------------------------------------------------------------------- bulk chunk frames

CHUNK_HEADER = struct.Struct(">IQI")
"""transfer_no (u32), offset (u64), crc32 of the payload (u32); then the payload."""


def pack_chunk(transfer_no: int, offset: int, payload: bytes) -> bytes:
    return CHUNK_HEADER.pack(transfer_no, offset, zlib.crc32(payload)) + payload


def unpack_chunk(frame: bytes) -> tuple[int, int, memoryview, bool]:
    """``(transfer_no, offset, payload, crc_ok)``; a frame shorter than a header raises."""
    if len(frame) < CHUNK_HEADER.size:
        raise ProtocolError(f"bulk frame of {len(frame)} bytes is shorter than its header")
    transfer_no, offset, crc = CHUNK_HEADER.unpack_from(frame)
    payload = memoryview(frame)[CHUNK_HEADER.size :]
    return transfer_no, offset, payload, zlib.crc32(payload) == crc


# --------------------------------------------------------------------------- fingerprint


def fingerprint_file(path: Path | str) -> str:
    """Cheap identity of a shared input: ``v1:`` + sha256(size as 8 bytes big-endian, first
    MiB, last MiB). Both sides compute it on their own mount; a mismatch means they do not see
    the same file. Reads at most 2 MiB, so it is fast on network filesystems. Blocking: call it
    from a thread."""
    size = os.path.getsize(path)
    h = hashlib.sha256(size.to_bytes(8, "big"))
    with open(path, "rb") as fh:
        h.update(fh.read(FINGERPRINT_WINDOW))
        if size > FINGERPRINT_WINDOW:
            fh.seek(max(FINGERPRINT_WINDOW, size - FINGERPRINT_WINDOW))
            h.update(fh.read(FINGERPRINT_WINDOW))
    return "v1:" + h.hexdigest()


# --------------------------------------------------------------------------- state machines


class JobState(enum.Enum):
    NEW = "new"
    WAITING_INPUT = "waiting_input"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


TERMINAL_JOB_STATES = frozenset(
    {JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED}
)
_JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.NEW: frozenset({JobState.WAITING_INPUT, JobState.QUEUED, JobState.REJECTED,
                             JobState.FAILED, JobState.CANCELLED}),
    JobState.WAITING_INPUT: frozenset({JobState.QUEUED, JobState.FAILED, JobState.CANCELLED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED}),
}


class TransferState(enum.Enum):
    OFFERED = "offered"
    SENDING = "sending"
    INTERRUPTED = "interrupted"
    VERIFYING = "verifying"
    COMPLETE = "complete"
    FAILED = "failed"


_TRANSFER_TRANSITIONS: dict[TransferState, frozenset[TransferState]] = {
    TransferState.OFFERED: frozenset({TransferState.SENDING, TransferState.COMPLETE,
                                      TransferState.FAILED, TransferState.INTERRUPTED}),
    TransferState.SENDING: frozenset({TransferState.VERIFYING, TransferState.INTERRUPTED,
                                      TransferState.FAILED, TransferState.SENDING}),
    TransferState.INTERRUPTED: frozenset({TransferState.OFFERED, TransferState.FAILED}),
    TransferState.VERIFYING: frozenset({TransferState.COMPLETE, TransferState.FAILED,
                                        TransferState.SENDING}),
}


S = TypeVar("S", bound=enum.Enum)


class _Machine(Generic[S]):
    """An enum state with one logged setter and a transition table."""

    kind = "state"

    def __init__(self, initial: S, table: dict[S, frozenset[S]], **ctx: Any) -> None:
        self._state = initial
        self._table = table
        self._log = get_logger(__name__, **ctx)

    @property
    def state(self) -> S:
        return self._state

    @state.setter
    def state(self, new: S) -> None:
        if new not in self._table.get(self._state, frozenset()):
            raise InvalidTransition(
                f"{self.kind} cannot go from {self._state.name} to {new.name}",
                hint="this message is not allowed in the current state",
            )
        self._log.debug("%s %s -> %s", self.kind, self._state.name, new.name)
        self._state = new


class JobMachine(_Machine[JobState]):
    """Life of one job (worker and client keep one each)."""

    kind = "job"

    def __init__(self, job_id: str) -> None:
        super().__init__(JobState.NEW, _JOB_TRANSITIONS, job=job_id)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_JOB_STATES


class TransferMachine(_Machine[TransferState]):
    """Life of one file transfer, as the sender sees it."""

    kind = "transfer"

    def __init__(self, sha256: str) -> None:
        super().__init__(TransferState.OFFERED, _TRANSFER_TRANSITIONS, sha256=sha256[:12])
