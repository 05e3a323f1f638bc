"""Outbox durability and cache naming, on a real filesystem, no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtc_annotator.errors import ProtocolError
from rtc_annotator.protocol import peer as proto
from rtc_annotator.transport.filetransfer import FileCache, TransferRefused, sanitize_name
from rtc_annotator.transport.outbox import Outbox


async def test_outbox_numbers_persists_acks_and_survives_restart(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    for i in range(4):
        batch = await box.append("job-1", [{"artifact_id": f"a{i}"}])
        assert batch.seq == i + 1
    assert await box.ack("job-1", 2) == 2
    reopened = Outbox(tmp_path)  # a new process on the same directory
    pending = await reopened.pending("job-1", 0)
    assert [b.seq for b in pending] == [3, 4]
    assert pending[0].envelopes == [{"artifact_id": "a2"}]
    await reopened.ack("job-1", 4)
    nxt = await reopened.append("job-1", [{"artifact_id": "a4"}])
    assert nxt.seq == 5  # numbering continues after every batch was acked
    await reopened.finish("job-1", proto.JobDone(job_id="job-1", last_seq=5, transfer="shared"))
    final = await Outbox(tmp_path).final("job-1")
    assert isinstance(final, proto.JobDone) and final.last_seq == 5
    await reopened.drop("job-1")
    assert not reopened.has("job-1")


async def test_outbox_refuses_path_like_job_ids(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "box")
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ProtocolError):
            await box.append(bad, [])
    assert list((tmp_path / "box").iterdir()) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lecture.mp4", "lecture.mp4"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\bob\\clip.mov", "clip.mov"),
        ("a\x00b\nc.mp4", "a_b_c.mp4"),
        ("...", "input"),
        ("", "input"),
        ('x<y>:"|?*.mkv', "x_y______.mkv"),
    ],
)
def test_sanitize_name(name: str, expected: str) -> None:
    assert sanitize_name(name) == expected


def test_sanitize_name_keeps_extension_of_long_names() -> None:
    out = sanitize_name("é" * 300 + ".mp4")
    assert out.endswith(".mp4") and len(out.encode()) <= 120


def test_cache_refuses_too_large_and_too_little_disk(tmp_path: Path) -> None:
    cache = FileCache(tmp_path, max_bytes=100, min_free_bytes=0)
    with pytest.raises(TransferRefused) as info:
        cache.check_accept(101)
    assert info.value.code == "FILE_TOO_LARGE"
    huge = FileCache(tmp_path, max_bytes=1 << 62, min_free_bytes=0)
    with pytest.raises(TransferRefused) as info:
        huge.check_accept(1 << 61)
    assert info.value.code == "NO_DISK_SPACE"
