"""Installed-looking plugin distributions built in a temporary directory.

A ``*.dist-info`` folder with ``METADATA`` and ``entry_points.txt`` next to a package on
``sys.path`` is an installed distribution as far as ``importlib.metadata`` is concerned, and
spawned job children inherit ``sys.path``: so these fakes go through the same discovery, the
same child process and the same error paths as a pip-installed plugin.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rtc_annotator import plugins
from rtc_annotator.artifacts.schemas import registry as schemas

DIST = "fakeplug"
VERSION = "0.3.1"

SCHEMAS = '''
from typing import ClassVar
from pydantic import Field
from rtc_annotator.artifacts.schemas import PluginPayload


class FakeValueV1(PluginPayload):
    artifact_type: ClassVar[str] = "fake.value"
    schema_version: ClassVar[int] = 1
    value: float = Field(ge=0.0, le=1.0)
    note: str = ""


class NotAPayload:
    artifact_type = "fake.nothing"
    schema_version = 1
'''

PIPELINES = '''
from typing import ClassVar
from rtc_annotator.pipelines import Pipeline, PipelineOutput


class _Base(Pipeline):
    version: ClassVar[str] = "0.3.1"
    artifact_types: ClassVar[tuple[str, ...]] = ("fake.value",)

    def out(self, ms, value, **kw):
        return PipelineOutput("fake.value", 1, ms, ms + 10, {"value": value, **kw})


class Good(_Base):
    name: ClassVar[str] = "fakegood"

    def run(self, video, options, context):
        for i in range(3):
            yield self.out(i * 100, i / 4)


class Raiser(_Base):
    name: ClassVar[str] = "fakeraiser"

    def run(self, video, options, context):
        yield self.out(0, 0.5)
        raise RuntimeError("sensor exploded")


class BadPayload(_Base):
    name: ClassVar[str] = "fakebad"

    def run(self, video, options, context):
        yield self.out(0, 0.5)
        yield self.out(100, 7.0)


class Undeclared(_Base):
    name: ClassVar[str] = "fakeundeclared"

    def run(self, video, options, context):
        yield PipelineOutput("scene", 1, 0, 10, {"index": 0, "start_ms": 0, "end_ms": 10})


class Misnamed(_Base):
    name: ClassVar[str] = "somethingelse"

    def run(self, video, options, context):
        yield from ()


class NoSchema(_Base):
    name: ClassVar[str] = "fakenoschema"
    artifact_types: ClassVar[tuple[str, ...]] = ("fake.unregistered",)

    def run(self, video, options, context):
        yield from ()


class ProbeRaises(Good):
    name: ClassVar[str] = "fakeprobe"

    def probe(self, settings):
        raise OSError("cannot read /dev/sensor")


class TakesScenes(Good):
    name: ClassVar[str] = "scenes"
'''

ENTRY_POINTS = """
[rtc_annotator.pipelines]
fakegood = fakeplug_pkg.pipelines:Good
fakeraiser = fakeplug_pkg.pipelines:Raiser
fakebad = fakeplug_pkg.pipelines:BadPayload
fakeundeclared = fakeplug_pkg.pipelines:Undeclared
fakemisnamed = fakeplug_pkg.pipelines:Misnamed
fakenoschema = fakeplug_pkg.pipelines:NoSchema
fakeprobe = fakeplug_pkg.pipelines:ProbeRaises
fakenoimport = fakeplug_pkg.missing:Pipeline
scenes = fakeplug_pkg.pipelines:TakesScenes
Bad-Name = fakeplug_pkg.pipelines:Good

[rtc_annotator.schemas]
fake.value = fakeplug_pkg.schemas:FakeValueV1
fake.nothing = fakeplug_pkg.schemas:NotAPayload
fake.gone = fakeplug_pkg.nomodule:Model
"""


def install_fake_plugin(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Write the fake distribution under ``root`` and put it on ``sys.path``."""
    pkg = root / "fakeplug_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "schemas.py").write_text(textwrap.dedent(SCHEMAS))
    (pkg / "pipelines.py").write_text(textwrap.dedent(PIPELINES))
    info = root / f"{DIST}-{VERSION}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", str(root))  # for subprocesses started by the test
    plugins.refresh()
    schemas.load_plugins(again=True)
    return root
