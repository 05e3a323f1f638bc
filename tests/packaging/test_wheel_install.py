"""Build the sdist, build the wheel from that sdist, install the wheel into a fresh venv and run
the installed commands: catches modules, migrations or data files missing from the package.

The sources are a copy of what git holds (no stale egg-info). Offline and quick: the PEP 517 hooks of the setuptools in the test venv (no build isolation, no
download), a venv without pip, the wheel installed with --no-deps by the test venv's pip, and
the test venv's site-packages appended after the fresh venv's own (a plain path in a .pth file:
the test venv's editable-install hook is not loaded, so `rtc_annotator` comes from the wheel)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable

pytestmark = pytest.mark.timeout(180)


def _run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _hook(hook: str, source: Path, out: Path) -> Path:
    code = ("import sys; from setuptools import build_meta as b; "
            f"print(b.{hook}(sys.argv[1]))")
    r = _run([PY, "-c", code, str(out)], cwd=source)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out / r.stdout.strip().splitlines()[-1]


def _clean_copy(dest: Path) -> Path:
    """The files git would commit (tracked, or new and not ignored), as in a fresh clone: a
    stale ``*.egg-info/SOURCES.txt`` in the work tree would otherwise hide a file missing
    from the package data."""
    r = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO)
    assert r.returncode == 0, r.stderr
    for name in filter(None, r.stdout.split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _clean_copy(tmp_path_factory.mktemp("clone"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, clone: Path) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("pkg")
    sdist = _hook("build_sdist", clone, tmp / "dist")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "src", filter="data")
    (unpacked,) = (tmp / "src").iterdir()
    wheel = _hook("build_wheel", unpacked, tmp / "dist")  # the wheel comes from the sdist
    return sdist, wheel


def test_sdist_and_wheel_contents(built: tuple[Path, Path]) -> None:
    sdist, wheel = built
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("LICENSE", "README.md", "pyproject.toml",
                   "rtc_annotator/store/migrations/alembic.ini",
                   "rtc_annotator/store/migrations/script.py.mako"):
        assert needed in names, needed
    with zipfile.ZipFile(wheel) as zf:
        files = set(zf.namelist())
        meta = next(zf.read(n).decode() for n in files if n.endswith(".dist-info/METADATA"))
    versions = [f for f in files if f.startswith("rtc_annotator/store/migrations/versions/")
                and f.endswith(".py")]
    tracked = list((REPO / "rtc_annotator/store/migrations/versions").glob("*.py"))
    assert len(versions) == len(tracked) > 0
    for needed in ("rtc_annotator/py.typed", "rtc_annotator/store/migrations/alembic.ini",
                   "rtc_annotator/store/migrations/env.py", "signaling/__main__.py"):
        assert needed in files, needed
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files)
    assert "License-Expression: Apache-2.0" in meta
    assert not any(f.startswith("tests/") for f in files)


def test_installed_wheel_runs(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, wheel = built
    venv = tmp_path / "venv"
    r = _run([PY, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    vpy = venv / "bin" / "python"
    r = _run([PY, "-m", "pip", "--python", str(vpy), "install", "--no-deps", "--no-index",
              "--no-build-isolation", "-q", str(wheel)], cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    site = Path(_run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()"
                      "['purelib'])"], cwd=tmp_path).stdout.strip())
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RTC_ANNOTATOR_", "PYTHON")) and k != "SHARED_STORAGE_ROOT"}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    where = _run([str(vpy), "-c", "import rtc_annotator, signaling; "
                  "print(rtc_annotator.__file__); print(signaling.__file__); "
                  "print(rtc_annotator.__version__)"], cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    files = where.stdout.split()
    assert all(f.startswith(str(site)) for f in files[:2]), files   # not the source tree

    cli = str(venv / "bin" / "rtc-annotator")
    r = _run([cli, "--version"], cwd=tmp_path, env=env)
    assert r.returncode == 0 and r.stdout.strip() == f"rtc-annotator {files[2]}", r.stderr
    assert files[2] not in ("", "0+unknown")

    r = _run([cli, "db", "upgrade"], cwd=tmp_path, env=env)   # the packaged migrations
    assert r.returncode == 0, r.stdout + r.stderr
    r = _run([cli, "doctor", "--json", "--timeout", "2"], cwd=tmp_path, env=env)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    report = json.loads(r.stdout)
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status["config"] == "ok" and status["database"] == "ok", report
    assert report["exit_code"] == r.returncode

    r = _run([str(vpy), "-m", "signaling", "--help"], cwd=tmp_path, env=env)
    assert r.returncode == 0 and "--admin-secret-file" in r.stdout, r.stderr


@pytest.mark.parametrize("dockerfile", ["signaling.Dockerfile", "worker.Dockerfile"])
def test_docker_build_context_is_enough_to_build(dockerfile: str, tmp_path: Path,
                                                 clone: Path) -> None:
    """The files a Dockerfile COPYs before `pip install .` are all the build needs (the license
    file and README named in pyproject.toml included)."""
    text = (REPO / "docker" / dockerfile).read_text()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, _dest = line.split()[1:]
            for src in sources:
                target = ctx / src
                if (clone / src).is_dir():
                    shutil.copytree(clone / src, target)
                else:
                    shutil.copy2(clone / src, target)
    wheel = _hook("build_wheel", ctx, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "rtc_annotator/store/migrations/alembic.ini" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), (
        f"{dockerfile} does not COPY the LICENSE: the image's package would lack it")
