"""Python entry points through which other packages add pipelines and payload schemas.

Two entry-point groups (declared in a plugin's ``pyproject.toml``)::

    [project.entry-points."rtc_annotator.pipelines"]
    brightness = "rtc_brightness.pipeline:BrightnessPipeline"    # name = pipeline name

    [project.entry-points."rtc_annotator.schemas"]
    "frame.brightness" = "rtc_brightness.schemas:FrameBrightnessV1"  # a PluginPayload model

This module only reads the installed distributions' metadata (no plugin code is imported
here): :func:`plugin_entries` lists what is declared, with the distribution that declares it,
so every error about a plugin can name the package to fix. Discovery is cached per process;
:func:`refresh` forgets it (tests that install a plugin at run time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import metadata

PIPELINES_GROUP = "rtc_annotator.pipelines"
"""Entry-point group of pipeline classes (``name = "module:Class"``)."""
SCHEMAS_GROUP = "rtc_annotator.schemas"
"""Entry-point group of payload schema models (``name = "module:Model"``)."""

PIPELINE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
"""What a plugin pipeline may be called: it is part of run ids and of the worker's register
message, so lower-case letters, digits and ``_``, at most 32 characters."""


@dataclass(frozen=True)
class PluginEntry:
    """One declared entry point."""

    group: str
    """Entry-point group."""
    name: str
    """Entry-point name (the pipeline name for pipelines)."""
    target: str
    """``module:attribute`` it points to."""
    distribution: str
    """Name of the installed distribution that declares it (``?`` when unknown)."""
    version: str
    """That distribution's version."""

    @property
    def origin(self) -> str:
        """``distribution version``, for messages."""
        return f"{self.distribution} {self.version}".strip()

    @property
    def reinstall_hint(self) -> str:
        """How to fix a broken plugin, for error hints."""
        return (f"fix or upgrade the package {self.distribution} (pip install -U "
                f"{self.distribution}), or uninstall it to drop the plugin")


@cache
def plugin_entries(group: str) -> tuple[PluginEntry, ...]:
    """Every entry point of ``group`` in the installed distributions, sorted by name."""
    found: dict[tuple[str, str], PluginEntry] = {}
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        name = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else ""
        # the same distribution can be seen twice (an editable install plus a build dir)
        found.setdefault((ep.name, ep.value), PluginEntry(group, ep.name, ep.value,
                                                          str(name), str(version)))
    return tuple(sorted(found.values(), key=lambda e: (e.name, e.target)))


def entry_for_target(group: str, target: str) -> PluginEntry | None:
    """The entry point of ``group`` that points at ``target`` (``module:attr``), if any."""
    for entry in plugin_entries(group):
        if entry.target == target:
            return entry
    return None


def refresh() -> None:
    """Forget what was discovered (after installing or removing a plugin in this process)."""
    plugin_entries.cache_clear()
