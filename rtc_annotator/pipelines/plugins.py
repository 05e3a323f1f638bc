"""Pipelines from other packages: the ``rtc_annotator.pipelines`` entry-point group.

:func:`plugin_pipelines` turns the declared entry points into registry entries (name ->
``module:Class``) without importing them, skipping names that are malformed or taken (a
built-in always wins). :func:`load_pipeline` imports and checks one entry; for a plugin every
failure is a :class:`PipelineUnavailable` that names the pipeline, the distribution that
declares it and the fix. The job child rebuilds its registry from the same entries, so it
finds the same plugins and the same distributions.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from rtc_annotator import plugins
from rtc_annotator.logs import get_logger
from rtc_annotator.pipelines.base import Pipeline, PipelineUnavailable

log = get_logger(__name__)


def plugin_pipelines(reserved: Iterable[str]) -> dict[str, str]:
    """Entries of the installed pipeline plugins whose names are valid and free."""
    taken = set(reserved)
    out: dict[str, str] = {}
    for entry in plugins.plugin_entries(plugins.PIPELINES_GROUP):
        if not plugins.PIPELINE_NAME.match(entry.name):
            log.warning("pipeline plugin skipped: bad name", ctx={
                "entry": entry.name, "distribution": entry.origin,
                "rule": plugins.PIPELINE_NAME.pattern})
            continue
        if entry.name in taken or entry.name in out:
            log.warning("pipeline plugin skipped: name taken", ctx={
                "entry": entry.name, "distribution": entry.origin})
            continue
        out[entry.name] = entry.target
    return out


def plugin_origin(target: str) -> plugins.PluginEntry | None:
    """The plugin entry behind a registry target, or None for built-ins and test entries."""
    if target.startswith("rtc_annotator."):  # a built-in: no need to scan the entry points
        return None
    return plugins.entry_for_target(plugins.PIPELINES_GROUP, target)


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def load_pipeline(name: str, target: str) -> Pipeline:
    """Import ``target`` and instantiate it as the pipeline ``name``.

    Built-ins fail loudly (a bug in this package); a plugin that does not import, is not a
    :class:`Pipeline`, calls itself by another name or produces a type without a registered
    schema raises :class:`PipelineUnavailable` naming its distribution.
    """
    entry = plugin_origin(target)
    if entry is None:
        cls = _import(target)
        pipeline = cls()
        if not isinstance(pipeline, Pipeline):
            raise TypeError(f"{target} is not a Pipeline")
        return pipeline
    where = f"pipeline {name!r} (plugin {target} from {entry.origin})"
    try:
        cls = _import(target)
        pipeline = cls()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        raise PipelineUnavailable(f"{where} does not load: {reason}",
                                  hint=entry.reinstall_hint) from None
    if not isinstance(pipeline, Pipeline):
        raise PipelineUnavailable(
            f"{where} is not a subclass of rtc_annotator.pipelines.Pipeline",
            hint=entry.reinstall_hint)
    if getattr(pipeline, "name", None) != name:
        raise PipelineUnavailable(
            f"{where} calls itself {getattr(pipeline, 'name', None)!r}",
            hint=f"make the entry-point name and the class's name equal in {entry.distribution}")
    from rtc_annotator.artifacts.schemas import registry as schemas

    known = {t for t, _ in schemas.known()}
    missing = [t for t in getattr(pipeline, "artifact_types", ()) if t not in known]
    if missing or not getattr(pipeline, "artifact_types", ()):
        what = ", ".join(missing) if missing else "no artifact_types"
        raise PipelineUnavailable(
            f"{where} produces {what} without a registered payload schema",
            hint=f"declare each type's PluginPayload model in the rtc_annotator.schemas "
                 f"entry-point group of {entry.distribution}")
    return pipeline
