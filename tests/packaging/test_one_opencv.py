"""Exactly one installed distribution provides the cv2 module (opencv-python and
opencv-python-headless side by side overwrite each other's files), and the imported
dependencies are declared."""

from __future__ import annotations

import importlib.metadata
import re

CV2_DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                     "opencv-contrib-python-headless")


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_exactly_one_distribution_provides_cv2() -> None:
    providers = []
    for dist in importlib.metadata.distributions():
        top = (dist.read_text("top_level.txt") or "").split()
        files = [str(f) for f in (dist.files or [])]
        if "cv2" in top or any(f.startswith("cv2/") for f in files):
            providers.append(dist.metadata["Name"])
    assert len(providers) == 1, (
        f"several distributions provide cv2: {providers}; who requires them: " + ", ".join(
            f"{d.metadata['Name']} -> {_name(r)}" for d in importlib.metadata.distributions()
            for r in (d.requires or []) if _name(r) in CV2_DISTRIBUTIONS and "extra ==" not in r))
    assert providers[0].lower() == "opencv-python-headless"


def test_direct_imports_are_declared() -> None:
    declared = {_name(r) for r in importlib.metadata.requires("rtc-annotator") or []
                if "extra ==" not in r}
    for needed in ("av", "opencv-python-headless", "scenedetect-headless", "tomli-w"):
        assert needed in declared, needed
    assert "toml" not in declared
    scenedetect = importlib.metadata.version("scenedetect-headless")
    assert tuple(int(x) for x in scenedetect.split(".")[:2]) >= (0, 7)
