"""docs/transport.md is a reference a third party implements from: check it against the code.

The fingerprint and the chunk CRC are recomputed here from the documented formulas (not by
calling the code under test), the generated field tables must match the models, and every
message of the example session must decode.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from rtc_annotator.protocol import peer as proto

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "transport.md"
MIB = 1024 * 1024


def documented_fingerprint(data: bytes) -> str:
    """The formula exactly as docs/transport.md writes it."""
    size, w = len(data), MIB
    h = hashlib.sha256(size.to_bytes(8, "big"))
    h.update(data[0:min(size, w)])
    if size > w:
        h.update(data[max(w, size - w):size])
    return "v1:" + h.hexdigest()


@pytest.mark.parametrize("size", [0, 1, 1000, MIB - 1, MIB, MIB + 1, MIB + 4096, 2 * MIB - 1,
                                  2 * MIB, 2 * MIB + 1, 3 * MIB + 17])
def test_fingerprint_follows_the_documented_formula(tmp_path: Path, size: int) -> None:
    data = bytes((i * 7 + i // 251) % 256 for i in range(size))
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert proto.fingerprint_file(path) == documented_fingerprint(data)


def test_fingerprint_of_small_files_hashes_each_byte_once(tmp_path: Path) -> None:
    """Up to 2 MiB the fingerprint is sha256(size || whole file): no byte is hashed twice."""
    for size in (10, MIB + 10, 2 * MIB):
        data = bytes(range(256)) * (size // 256) + bytes(size % 256)
        path = tmp_path / f"{size}.bin"
        path.write_bytes(data)
        whole = hashlib.sha256(size.to_bytes(8, "big") + data).hexdigest()
        assert proto.fingerprint_file(path) == "v1:" + whole


def test_fingerprint_of_large_files_hashes_head_and_tail(tmp_path: Path) -> None:
    size = 3 * MIB
    data = bytes(size // 2) + b"\x01" * (size - size // 2)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(size.to_bytes(8, "big") + data[:MIB] + data[-MIB:]).hexdigest()
    assert proto.fingerprint_file(path) == "v1:" + expected
    # a change in the middle is not seen (documented limit)
    changed = bytearray(data)
    changed[size // 2] ^= 0xFF
    path.write_bytes(bytes(changed))
    assert proto.fingerprint_file(path) == "v1:" + expected


def test_chunk_frame_layout_and_crc_variant() -> None:
    payload = b"123456789"
    frame = proto.pack_chunk(7, 2**40 + 3, payload)
    assert len(frame) == 16 + len(payload)
    assert frame[0:4] == (7).to_bytes(4, "big")
    assert frame[4:12] == (2**40 + 3).to_bytes(8, "big")
    # CRC-32/ISO-HDLC check value, over the payload only
    assert frame[12:16] == (0xCBF43926).to_bytes(4, "big")
    assert frame[16:] == payload
    no, offset, data, ok = proto.unpack_chunk(frame)
    assert (no, offset, bytes(data), ok) == (7, 2**40 + 3, payload, True)


def test_messages_are_msgpack_maps_with_text_hashes() -> None:
    sha = "ab" * 32
    raw = proto.encode(proto.TransferOffer(transfer_no=1, job_id="j", name="a.mp4", size=3,
                                           sha256=sha))
    obj = msgpack.unpackb(raw, raw=True)  # raw=True keeps str and bin apart as bytes / bytes
    assert obj[b"sha256"] == sha.encode()  # str type on the wire (bin would fail raw=False below)
    assert msgpack.unpackb(raw, raw=False)["sha256"] == sha
    # a bin sha256 is refused
    bad = msgpack.packb({"type": "TRANSFER_OFFER", "transfer_no": 1, "job_id": "j",
                         "name": "a", "size": 3, "sha256": bytes.fromhex(sha)},
                        use_bin_type=True)
    with pytest.raises(proto.ProtocolError, match="sha256"):
        proto.decode(bad)


def test_optional_fields_may_be_left_out() -> None:
    msg = proto.decode(msgpack.packb({"type": "HELLO", "versions": [1], "role": "client"}))
    assert isinstance(msg, proto.Hello) and msg.name == "" and msg.software == ""
    assert proto.PROTOCOL_VERSION == 1 and proto.SUPPORTED_VERSIONS == (1,)


def test_generated_tables_match_the_models() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protocol_docs.py"),
                        "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def _example_lines() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Example session"):]
    block = section[section.index("```\n") + 4:]
    block = block[:block.index("```")]
    return block.splitlines()


def test_example_session_messages_decode() -> None:
    lines = _example_lines()
    seen = []
    for line in lines:
        m = re.match(r"^(c->w|w->c) (\{.*\})$", line)
        if not m:
            continue
        obj = json.loads(m.group(2))
        if obj.get("type") == "ARTIFACT_BATCH":
            obj["envelopes"] = []  # abbreviated in the docs
        msg = proto.decode(msgpack.packb(obj, use_bin_type=True))
        seen.append(msg.type)
    assert seen[:2] == ["HELLO", "HELLO"]
    assert {"JOB_REQUEST", "PATH_ERROR", "JOB_ACCEPTED", "TRANSFER_OFFER", "TRANSFER_STATUS",
            "TRANSFER_DONE", "ARTIFACT_BATCH", "ARTIFACT_ACK", "JOB_DONE", "PING",
            "PONG"} <= set(seen)
    assert seen[-1] == "ARTIFACT_ACK"


def test_example_session_transfer_arithmetic() -> None:
    """The example's frame count and last offset agree with its size and 64 KiB chunks."""
    lines = "\n".join(_example_lines())
    size = int(re.search(r'"size": (\d+)', lines).group(1))  # type: ignore[union-attr]
    frames = -(-size // 65536)
    assert f"{frames} frames in all" in lines
    assert f"offset={(frames - 1) * 65536}" in lines
