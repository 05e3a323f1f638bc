"""Artifact batches are split so each ARTIFACT_BATCH fits one data-channel message."""

from __future__ import annotations

from rtc_annotator.protocol import peer as proto
from rtc_annotator.worker.agent import MAX_BATCH_BYTES, _by_size


def _segment(i: int) -> dict[str, object]:
    words = [{"word": f"w{i}-{j}", "start_ms": j * 10, "end_ms": j * 10 + 9, "probability": 0.5}
             for j in range(120)]
    return {"artifact_id": f"{i:032x}", "artifact_type": "transcript.segment",
            "payload": {"text": "x" * 400, "words": words}}


def test_large_batches_are_split_under_the_message_limit() -> None:
    envelopes = [_segment(i) for i in range(64)]
    chunks = _by_size(envelopes)
    assert len(chunks) > 1
    assert [e for c in chunks for e in c] == envelopes  # order kept, nothing lost
    for seq, chunk in enumerate(chunks, 1):
        frame = proto.encode(proto.ArtifactBatch(job_id="job1", seq=seq, envelopes=chunk))
        assert len(frame) < 256 * 1024
    assert _by_size([]) == []
    assert _by_size(envelopes[:1]) == [envelopes[:1]]
    assert MAX_BATCH_BYTES <= 192 * 1024
