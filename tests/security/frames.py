"""Frame generators for the fuzz tests: real frames of both protocols, hypothesis strategies
shaped like them, and deterministic mutators (truncation, type confusion, huge numbers, deep
nesting, unknown fields, junk bytes)."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import msgpack
from hypothesis import strategies as st

from rtc_annotator.protocol import peer as proto
from rtc_annotator.protocol import signaling as sp

# --------------------------------------------------------------------------- shared pieces

HUGE_INTS = [2**31, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400, -1, 0]
WEIRD_STRINGS = ["", " ", "\x00", "../../etc/passwd", "a" * 5000, "\u202e\u0000\ud7ff",
                 "\U0001f600" * 50, "%s%n", "'; DROP TABLE rooms; --", "null", "\\\\?\\C:\\"]


def confusions(rng: random.Random) -> Any:
    """A value of some random JSON type (the 'type confusion' pool)."""
    pool: list[Any] = [None, True, False, 0, -1, 1.5, float(rng.choice(HUGE_INTS[:5])), "x",
                       [], {}, [1, "a", None], {"a": {"b": []}}, rng.choice(HUGE_INTS),
                       rng.choice(WEIRD_STRINGS)]
    return rng.choice(pool)


def nested(depth: int, leaf: Any = 1, *, as_list: bool = True) -> Any:
    out: Any = leaf
    for _ in range(depth):
        out = [out] if as_list else {"n": out}
    return out


def mutate_obj(obj: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One structural mutation of a message map (possibly nested)."""
    out = copy.deepcopy(obj)
    target: dict[str, Any] = out
    nested_maps = [v for v in out.values() if isinstance(v, dict)]
    if nested_maps and rng.random() < 0.4:
        target = rng.choice(nested_maps)
    keys = list(target)
    op = rng.randrange(8)
    if op == 0 and keys:  # type confusion
        target[rng.choice(keys)] = confusions(rng)
    elif op == 1 and keys:  # drop a field
        del target[rng.choice(keys)]
    elif op == 2:  # unknown field
        target[rng.choice(["from", "admin", "role", "room", "__proto__", "x" * 70])] = \
            confusions(rng)
    elif op == 3 and keys:  # huge or negative number
        target[rng.choice(keys)] = rng.choice(HUGE_INTS)
    elif op == 4 and keys:  # deep nesting
        target[rng.choice(keys)] = nested(rng.choice([10, 60, 150]),
                                          as_list=rng.random() < 0.5)
    elif op == 5 and keys:  # weird string
        target[rng.choice(keys)] = rng.choice(WEIRD_STRINGS)
    elif op == 6:  # type swapped for another known (or unknown) type
        out["type"] = rng.choice([*sp.REQUEST_TYPES, *proto.MESSAGE_TYPES, "", "HELLO ", 7])
    else:  # a list where a map was
        if keys:
            key = rng.choice(keys)
            target[key] = [target[key]] * rng.randrange(0, 4)
    return out


# --------------------------------------------------------------------------- signaling

def real_signaling_frames() -> list[dict[str, Any]]:
    """One valid example of every request type (as in docs/protocol.md)."""
    cap = {"name": "gpu-node-17", "storage_backends": [{"name": "vast", "type": "vast"}],
           "pipelines": ["metadata", "scenes"], "gpus": [{"name": "H200", "memory_mb": 143771}],
           "job_slots": 2, "load": 0, "version": "0.1.0"}
    return [
        {"type": "hello", "id": "1", "token": "rtca1.eyJ.x8f", "name": "laptop", "protocol": 1},
        {"type": "heartbeat", "id": "2"},
        {"type": "register", "id": "3", "capabilities": cap},
        {"type": "load", "id": "4", "load": 1},
        {"type": "list_workers", "id": "5", "backend": "vast", "pipeline": "scenes",
         "min_gpu_memory_mb": 16000},
        {"type": "route", "id": "6", "pipelines": ["scenes"], "required_storage": "vast",
         "min_gpu_memory_mb": 16000, "strict": True},
        {"type": "cancel_route", "id": "7", "route_id": "6"},
        {"type": "signal", "id": "8", "session_id": "9f3c2a1b7e6d5c4b",
         "data": {"kind": "offer", "sdp": "v=0\r\n", "type": "offer"}},
        {"type": "end_session", "id": "9", "session_id": "9f3c2a1b7e6d5c4b", "reason": "done"},
        {"type": "get_policy", "id": "10"},
        {"type": "set_policy", "id": "10", "policy": {"storage": "strict",
         "strict_backends": ["vast"], "max_queue": 10, "recent_window_s": 600}},
        {"type": "drain", "id": "11", "worker": "gpu-node-17", "drain": True},
        {"type": "decisions", "id": "12", "limit": 50},
        {"type": "route_queue", "id": "16"},
        {"type": "issue_token", "id": "13", "role": "worker", "ttl_s": 60, "label": "x"},
        {"type": "revoke_token", "id": "14", "token_id": "5be0c1d2e3f40516"},
        {"type": "create_room", "id": "15", "name": "fuzzroom", "ttl_s": 60},
    ]


def mutated_signaling_frame(rng: random.Random, real: list[dict[str, Any]]) -> str | bytes:
    """A mutated real frame as it goes on the wire (text, or bytes for a binary frame)."""
    base = rng.choice(real)
    op = rng.random()
    if op < 0.55:
        obj = base
        for _ in range(rng.randrange(1, 4)):
            obj = mutate_obj(obj, rng)
        return json.dumps(obj)
    text = json.dumps(base)
    if op < 0.75:  # truncation
        return text[: rng.randrange(0, len(text))]
    if op < 0.82:  # deep nesting of the whole frame (past the JSON parser's recursion limit)
        depth = rng.choice([500, 2000, 20000])
        return "[" * depth + "]" * depth
    if op < 0.87:  # invalid UTF-8 / arbitrary bytes, sent as a binary frame
        return rng.choice([b"\xff\xfe", b"\xc3\x28", text.encode()[:20] + b"\x80\x81"])
    if op < 0.92:  # huge number literal (past int() digit limits)
        return text.replace('"id"', '"big": ' + "9" * rng.choice([20, 400, 5000]) + ', "id"', 1)
    if op < 0.96:  # non-object JSON
        return rng.choice(["null", "1", '"x"', "[]", "true", "NaN", "1e999", '{"type": null}'])
    return rng.choice(["", " ", "{", '{"type": "heartbeat", "id": "\\ud800"}',
                       '{"type": "heartbeat", "id": "a", "id": "b"}'])


JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.sampled_from(HUGE_INTS)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=24))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)


def _fields_of(model: Any) -> list[str]:
    return [n for n in model.model_fields if n != "type"]


SIGNALING_FIELDS: dict[str, list[str]] = {k: _fields_of(m) for k, m in sp.REQUEST_TYPES.items()}
REQUEST_IDS = st.one_of(st.text(min_size=0, max_size=70), st.integers(), st.none(),
                        st.sampled_from(["1", "a" * 64, "a" * 65, "\u00e9"]))


@st.composite
def signaling_frames(draw: st.DrawFn) -> str:
    """A JSON object shaped like a request: a known (or unknown) type, an id, and a random
    subset of that type's real field names with random values (sometimes real ones)."""
    kind = draw(st.sampled_from([*sp.REQUEST_TYPES, "nope", "HELLO", ""]))
    names = SIGNALING_FIELDS.get(kind, ["id", "data"])
    obj: dict[str, Any] = {"type": kind}
    for name in draw(st.lists(st.sampled_from(names), max_size=len(names), unique=True)):
        obj[name] = draw(REQUEST_IDS if name == "id" else JSON_VALUES)
    if draw(st.booleans()):
        obj[draw(st.text(max_size=8))] = draw(JSON_VALUES)
    return json.dumps(obj)


# --------------------------------------------------------------------------- peer protocol

SHA = "ab" * 32


def real_peer_messages() -> list[dict[str, Any]]:
    """Valid examples of what a client may send a worker (as maps)."""
    shared = proto.SharedInput(storage_backend="vast", user_subdir="alice",
                               relative_path="clips/a.mp4", size=10, fingerprint="v1:00")
    rtc = proto.RtcInput(name="a.mp4", size=10, sha256=SHA)
    msgs: list[Any] = [
        proto.JobRequest(job_id="job-1", pipelines={"scenes": {}}, input=shared),
        proto.JobRequest(job_id="job-2", pipelines={"scenes": {"threshold": 27}}, input=rtc),
        proto.TransferOffer(transfer_no=1, job_id="job-2", name="a.mp4", size=10, sha256=SHA),
        proto.TransferDone(transfer_no=1, sent_bytes=10),
        proto.ArtifactAck(job_id="job-1", seq=1),
        proto.Cancel(job_id="job-1"),
        proto.Attach(job_id="job-1", last_acked_seq=0),
        proto.Ping(nonce=1),
        proto.Hello(versions=[1], role="client", name="laptop"),
        proto.Error(error={"code": "X", "message": "m"}),
    ]
    return [m.model_dump(mode="json") for m in msgs]


def mutated_peer_message(rng: random.Random, real: list[dict[str, Any]]) -> bytes:
    base = rng.choice(real)
    op = rng.random()
    if op < 0.6:
        obj = base
        for _ in range(rng.randrange(1, 4)):
            obj = mutate_obj(obj, rng)
        # job ids that survive mutation must not collide with the control job
        if isinstance(obj.get("job_id"), str):
            obj["job_id"] = f"fz{rng.randrange(10**9)}"
        try:
            return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]
        except (OverflowError, ValueError, TypeError):  # ints beyond 64 bits, deep nesting
            return msgpack.packb({"type": "JOB_REQUEST", "job_id": 2**64 - 1})  # type: ignore[no-any-return]
    packed: bytes = msgpack.packb(base, use_bin_type=True)
    if op < 0.75:  # truncation
        return packed[: rng.randrange(0, len(packed))]
    if op < 0.85:  # flipped bytes
        buf = bytearray(packed)
        for _ in range(rng.randrange(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        return bytes(buf)
    if op < 0.9:  # declared lengths far beyond the data (huge sizes)
        return rng.choice([b"\xdf\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff",
                           b"\xdb\xff\xff\xff\xff" + b"a", b"\xc6\xff\xff\xff\xff"])
    if op < 0.95:  # deep nesting
        depth = rng.choice([100, 2000, 5000])
        return b"\x91" * depth + b"\xc0"
    return rng.choice([b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb("JOB_REQUEST"),
                       msgpack.packb({1: 2}), msgpack.packb({"type": b"JOB_REQUEST"}),
                       b"\x81\xa4type\xabJOB_REQUEST" + b"\xff"])


PEER_FIELDS: dict[str, list[str]] = {}
for _m in (proto.JobRequest, proto.TransferOffer, proto.TransferDone, proto.ArtifactAck,
           proto.Cancel, proto.Attach, proto.Ping, proto.Hello, proto.Error, proto.JobDone):
    PEER_FIELDS[_m.model_fields["type"].default] = _fields_of(_m)

MSGPACK_VALUES = st.recursive(
    JSON_SCALARS.filter(lambda v: not isinstance(v, int) or -(2**63) <= v < 2**64)
    | st.binary(max_size=16),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)


@st.composite
def peer_maps(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([*PEER_FIELDS, "JOB_DONE", "nope", "job_request"]))
    names = PEER_FIELDS.get(kind, ["job_id"])
    obj: dict[str, Any] = {"type": kind}
    for name in draw(st.lists(st.sampled_from(names), max_size=len(names), unique=True)):
        if name == "input":
            obj[name] = draw(st.fixed_dictionaries(
                {"transfer": st.sampled_from(["shared", "rtc", "x"])},
                optional={k: MSGPACK_VALUES for k in ("storage_backend", "user_subdir",
                                                       "relative_path", "size", "fingerprint",
                                                       "name", "sha256")}))
        elif name == "job_id":
            obj[name] = draw(st.one_of(st.from_regex(r"fz[a-z0-9]{1,10}", fullmatch=True),
                                       MSGPACK_VALUES))
        else:
            obj[name] = draw(MSGPACK_VALUES)
    return obj


def peer_frames() -> st.SearchStrategy[bytes]:
    return peer_maps().map(lambda m: msgpack.packb(m, use_bin_type=True))
