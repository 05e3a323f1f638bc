"""The routing policy as pure functions."""

from __future__ import annotations

from rtc_annotator.protocol.signaling import Requirements, RoutingPolicy
from signaling.routing import Candidate, choose, is_strict, why_never


def cand(name: str, *, backends: tuple[str, ...] = (), pipelines: tuple[str, ...] = ("scenes",),
         gpu: int = 0, free: int = 1, recent: int = 0, draining: bool = False) -> Candidate:
    return Candidate(name, frozenset(pipelines), frozenset(backends), gpu, free, recent,
                     draining)


PREFERRED = RoutingPolicy()
STRICT = RoutingPolicy(storage="strict")


def req(**kw: object) -> Requirements:
    kw.setdefault("pipelines", ["scenes"])
    return Requirements.model_validate(kw)


def test_storage_match_beats_slots_and_memory() -> None:
    ws = [cand("big", backends=("nfs",), gpu=80000, free=8), cand("small", backends=("vast",))]
    c = choose(ws, req(required_storage="vast"), PREFERRED)
    assert c.worker == "small" and c.storage_match is True and c.candidates == 2


def test_then_free_slots_then_memory_then_recent_then_name() -> None:
    assert choose([cand("a", free=1), cand("b", free=3)], req(), PREFERRED).worker == "b"
    assert choose([cand("a", gpu=8), cand("b", gpu=16)], req(), PREFERRED).worker == "b"
    assert choose([cand("a", recent=5), cand("b", recent=2)], req(), PREFERRED).worker == "b"
    assert choose([cand("b"), cand("a")], req(), PREFERRED).worker == "a"


def test_hard_filters() -> None:
    ws = [cand("busy", free=0), cand("drained", draining=True),
          cand("nopipe", pipelines=("ocr",)), cand("small", gpu=100)]
    assert choose(ws, req(min_gpu_memory_mb=200), PREFERRED).worker is None
    assert choose(ws, req(min_gpu_memory_mb=50), PREFERRED).worker == "small"


def test_strictness_sources() -> None:
    assert not is_strict(req(), STRICT)  # nothing to be strict about
    assert is_strict(req(required_storage="vast", strict=True), PREFERRED)
    assert is_strict(req(required_storage="vast"), STRICT)
    assert is_strict(req(required_storage="vast"), RoutingPolicy(strict_backends=["vast"]))
    assert not is_strict(req(required_storage="nfs"), RoutingPolicy(strict_backends=["vast"]))
    ws = [cand("nfs", backends=("nfs",))]
    assert choose(ws, req(required_storage="vast"), PREFERRED).worker == "nfs"
    assert choose(ws, req(required_storage="vast"), STRICT).worker is None


def test_why_never_names_the_failed_requirement() -> None:
    assert "no worker is registered" in (why_never([], req(), PREFERRED, "lab") or "")
    ws = [cand("a", backends=("nfs",), pipelines=("scenes",), gpu=8000),
          cand("b", pipelines=("ocr",), gpu=8000)]
    assert why_never(ws, req(pipelines=["scenes"]), PREFERRED, "lab") is None
    assert "transcript" in (why_never(ws, req(pipelines=["transcript"]), PREFERRED, "lab") or "")
    assert "single worker" in (why_never(ws, req(pipelines=["scenes", "ocr"]), PREFERRED,
                                         "lab") or "")
    msg = why_never(ws, req(required_storage="vast"), STRICT, "lab") or ""
    assert "'vast'" in msg and "strict" in msg
    assert why_never(ws, req(required_storage="vast"), PREFERRED, "lab") is None
    assert "16000 MiB" in (why_never(ws, req(min_gpu_memory_mb=16000), PREFERRED, "lab") or "")
    # busy or draining workers still count as "could match later": queue, not error
    assert why_never([cand("x", free=0, draining=True)], req(), PREFERRED, "lab") is None


def test_a_job_naming_a_model_goes_only_to_a_worker_holding_it() -> None:
    lab = Candidate("lab", frozenset({"objects"}), frozenset(), 0, 1, 0,
                    models=frozenset({"objects/people", "objects/yolo11m.pt"}))
    plain = Candidate("plain", frozenset({"objects"}), frozenset(), 80000, 4, 0,
                      models=frozenset({"objects/yolo11m.pt"}))
    wants = req(pipelines=["objects"], models={"objects": "people"})
    assert choose([plain, lab], wants, PREFERRED).worker == "lab"
    assert why_never([plain, lab], wants, PREFERRED, "r") is None
    # without a model named, the better-equipped worker wins as before
    assert choose([plain, lab], req(pipelines=["objects"]), PREFERRED).worker == "plain"
    # nobody holds it: the reason names the model, what is held, and the fix
    never = why_never([plain], wants, PREFERRED, "r")
    assert never is not None
    assert "holds model 'people' for objects (held: yolo11m.pt)" in never
    assert "rtc-annotator models add PATH --pipeline objects --name people" in never
    assert choose([plain], wants, PREFERRED).worker is None
    # two models on two different workers: no single worker holds both
    both = req(pipelines=["objects", "transcript"],
               models={"objects": "people", "transcript": "tiny.en"})
    asr = Candidate("asr", frozenset({"objects", "transcript"}), frozenset(), 0, 1, 0,
                    models=frozenset({"transcript/tiny.en"}))
    lab2 = Candidate("lab2", frozenset({"objects", "transcript"}), frozenset(), 0, 1, 0,
                     models=frozenset({"objects/people"}))
    assert "no single worker in room 'r' holds all of the models" in (
        why_never([asr, lab2], both, PREFERRED, "r") or "")
