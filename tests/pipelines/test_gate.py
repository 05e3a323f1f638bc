"""The change gate on drawn frames: what it skips, what band it reads, when it reads all."""

from __future__ import annotations

import numpy as np
import pytest

from rtc_annotator.pipelines.base import OptionsError
from rtc_annotator.pipelines.gate import ChangeGate, GateSettings

W, H = 640, 360


def slide(title: str, page: str = "", inset_x: int | None = None, noise: int = 0,
          seed: int = 0, body: str = "a body line of text") -> np.ndarray:
    import cv2

    img = np.full((H, W, 3), 245, np.uint8)
    cv2.putText(img, title, (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (20, 20, 20), 2)
    cv2.putText(img, body, (40, 160), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                (40, 40, 40), 2)
    if page:
        cv2.putText(img, page, (560, 340), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (60, 60, 60), 1)
    if inset_x is not None:
        cv2.rectangle(img, (inset_x, 200), (inset_x + 60, 240), (200, 40, 40), -1)
    if noise:
        rng = np.random.default_rng(seed)
        img = np.clip(img.astype(np.int16) + rng.integers(-noise, noise + 1, img.shape),
                      0, 255).astype(np.uint8)
    return img


def test_first_frame_is_read_whole_and_an_identical_one_is_skipped() -> None:
    gate = ChangeGate()
    first = gate.decide(slide("Gradient descent"), 0)
    assert (first.decision, first.top, first.bottom) == ("full", 0, H)
    assert gate.decide(slide("Gradient descent"), 1000).decision == "skip"
    assert gate.stats.as_dict()["calls_saved"] == 1


def test_mild_noise_is_not_a_change_but_a_new_slide_is() -> None:
    gate = ChangeGate()
    gate.decide(slide("Gradient descent", noise=3, seed=1), 0)
    assert gate.decide(slide("Gradient descent", noise=3, seed=2), 1000).decision == "skip"
    new = slide("Stochastic gradients", noise=3, seed=3, body="minibatches of examples")
    v = gate.decide(new, 2000)
    assert v.decision == "band" and v.top <= 50 and v.bottom >= 170  # title through body
    # only the title changed: its band is read
    v = gate.decide(slide("Momentum", noise=3, seed=4, body="minibatches of examples"), 3000)
    assert v.decision == "band" and v.bottom < 140


def test_a_page_number_change_reads_only_its_band() -> None:
    gate = ChangeGate()
    gate.decide(slide("Gradient descent", page="3/12"), 0)
    v = gate.decide(slide("Gradient descent", page="4/12"), 1000)
    assert v.decision == "band"
    assert v.top > 250 and v.bottom > 340  # the bottom rows, not the title or the body
    assert v.bottom - v.top < H * 0.3


def test_a_band_grows_over_the_text_boxes_it_touches() -> None:
    gate = ChangeGate()
    gate.decide(slide("Gradient descent", page="3/12"), 0)
    # an earlier read found a text box spanning rows 0.80-0.99 (e.g. a two-line footer)
    v = gate.decide(slide("Gradient descent", page="4/12"), 1000, boxes=[(0.80, 0.99)])
    assert v.decision == "band" and v.top <= int(0.80 * H)


def test_compares_with_the_last_frame_read_so_slow_drift_adds_up() -> None:
    gate = ChangeGate(GateSettings(threshold=16.0))
    base = slide("Gradient descent")
    gate.decide(base, 0)
    decisions = []
    for step in range(1, 8):  # each step darkens 5 levels: below the threshold alone
        frame = np.clip(base.astype(np.int16) - 5 * step, 0, 255).astype(np.uint8)
        decisions.append(gate.decide(frame, step * 1000).decision)
    assert decisions[0] == "skip"
    assert "full" in decisions  # read once the drift passed the threshold


def test_a_moving_inset_is_read_as_a_band_and_noise_everywhere_as_full() -> None:
    gate = ChangeGate()
    gate.decide(slide("Demo", inset_x=100), 0)
    v = gate.decide(slide("Demo", inset_x=300), 1000)
    assert v.decision == "band" and v.top < 200 and v.bottom > 240
    loud = ChangeGate()
    loud.decide(slide("Demo", noise=60, seed=1), 0)
    assert loud.decide(slide("Demo", noise=60, seed=2), 1000).decision == "full"


def test_max_skip_forces_a_read_and_bands_can_be_off() -> None:
    gate = ChangeGate(GateSettings(max_skip_ms=5000, bands=False))
    gate.decide(slide("A"), 0)
    assert gate.decide(slide("A"), 4000).decision == "skip"
    assert gate.decide(slide("A"), 5000).decision == "full"
    assert gate.decide(slide("A", page="2"), 6000).decision == "full"  # no bands


@pytest.mark.parametrize("kwargs", [{"threshold": 0}, {"threshold": 300}, {"cols": 4},
                                    {"max_band_fraction": 0}, {"max_skip_ms": -1}])
def test_misconfigured_gate_is_a_clear_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(OptionsError) as info:
        GateSettings(**kwargs)  # type: ignore[arg-type]
    assert info.value.hint
