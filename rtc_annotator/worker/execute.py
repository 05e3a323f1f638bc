"""Inside the job child: run a job's pipelines side by side and stream their outputs.

Each pipeline runs in its own thread (the model libraries release the GIL while they compute),
so a job of several pipelines takes about as long as its slowest one rather than the sum, and
the frame-based ones (``uses_frames``) share one :class:`SharedDecoder`: the video is decoded
once per job. A pipeline that fails reports its own ``failed`` message and the others go on, so
their results are kept. Every output is checked before it leaves the child: its type must be
one the pipeline declares and its payload must match the registered schema, so a plugin's bad
payload is reported as that pipeline's error (naming the package), not as a broken job.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.pipelines.base import (
    Pipeline,
    PipelineError,
    PipelineOptions,
    PipelineOutput,
    RunContext,
)
from rtc_annotator.pipelines.frames import SharedDecoder
from rtc_annotator.pipelines.plugins import plugin_origin
from rtc_annotator.pipelines.registry import Registry

Send = Callable[[tuple[Any, ...]], None]


class PluginOutputError(PipelineError):
    """A pipeline yielded an output that does not match what it declared."""

    code = "SCHEMA_ERROR"


def check_output(name: str, target: str, pipeline: Pipeline, output: PipelineOutput) -> None:
    """Raise :class:`PluginOutputError` unless ``output`` is storable as ``name``'s result."""
    from rtc_annotator.artifacts.schemas import SchemaError
    from rtc_annotator.artifacts.schemas import registry as schemas

    entry = plugin_origin(target)
    who = f"pipeline {name!r}" + (f" (plugin from {entry.origin})" if entry else "")
    fix = (f"fix {entry.distribution} so that run() yields payloads matching its schema "
           "(or upgrade it)" if entry else "this is a bug in rtc-annotator: report it")
    if output.artifact_type not in pipeline.artifact_types:
        raise PluginOutputError(
            f"{who} yielded a {output.artifact_type!r} output but declares only "
            f"{', '.join(pipeline.artifact_types)}", hint=fix)
    if output.span_start_ms < 0 or output.span_end_ms < output.span_start_ms:
        raise PluginOutputError(
            f"{who} yielded span {output.span_start_ms}..{output.span_end_ms} ms "
            "(needs 0 <= start <= end)", hint=fix)
    try:
        schemas.validate(output.artifact_type, output.schema_version, output.payload)
    except SchemaError as exc:
        raise PluginOutputError(f"{who}: {exc.message}", hint=fix) from None


def internal_error(pipeline: str, target: str | None, exc: BaseException) -> dict[str, str]:
    """The envelope of an unexpected exception in ``pipeline``."""
    text = f"{pipeline}: {type(exc).__name__}: {exc}".replace("\n", " ")
    entry = plugin_origin(target) if target else None
    hint = "see the worker log for this job id"
    if entry is not None:
        text = f"{pipeline} (plugin from {entry.origin}): {type(exc).__name__}: {exc}"
        text = text.replace("\n", " ")
        hint = f"the traceback is in the worker log for this job id; {entry.reinstall_hint}"
    return {"code": "PIPELINE_ERROR", "message": text[:300], "hint": hint}


@dataclass
class _Prepared:
    """A pipeline set up by :func:`_prepare`, or the error that stopped it."""

    pipeline: Pipeline | None = None
    options: PipelineOptions | None = None
    seconds: float = 0.0
    error: BaseException | None = None
    trace: str = ""


def _prepare(name: str, registry: Registry, options_raw: dict[str, Any] | None,
             context: RunContext) -> _Prepared:
    """Instantiate, check the options and run the pipeline's ``prepare`` (models, imports)."""
    started = time.monotonic()
    try:
        pipeline = registry.get(name)
        options = pipeline.parse_options(options_raw)
        pipeline.prepare(options, context)
    except Exception as exc:
        return _Prepared(error=exc, trace=traceback.format_exc())
    return _Prepared(pipeline, options, time.monotonic() - started)


def _run_one(name: str, registry: Registry, video: Path, prepared: _Prepared,
             context: RunContext, send: Send, batch_max: int, flush_s: float,
             shared: SharedDecoder | None) -> None:
    target = registry.entries.get(name)
    batch: list[dict[str, Any]] = []
    try:
        if prepared.error is not None:
            raise prepared.error
        pipeline, options = prepared.pipeline, prepared.options
        assert pipeline is not None and options is not None
        send(("started", name))
        last_send = time.monotonic()
        started = last_send - prepared.seconds
        count = 0
        for output in pipeline.run(video, options, context):
            check_output(name, target or "", pipeline, output)
            batch.append(output.to_dict())
            count += 1
            now = time.monotonic()
            if len(batch) >= batch_max or now - last_send >= flush_s:
                send(("outputs", name, batch))
                batch = []
                last_send = now
        if batch:
            send(("outputs", name, batch))
            batch = []
        send(("pipeline_done", name, count, time.monotonic() - started,
              dict(context.stats.get(name, {}))))
    except Exception as exc:
        if batch:  # what the pipeline yielded before it failed is a result too
            send(("outputs", name, batch))
        if isinstance(exc, RtcAnnotatorError):
            envelope = exc.envelope().model_dump()
        else:
            envelope = internal_error(name, target, exc)
        send(("failed", name, envelope, prepared.trace or traceback.format_exc()))
    finally:
        if shared is not None:
            shared.withdraw()


def run_pipelines(send: Send, video: Path, pipelines: list[str],
                  options: dict[str, dict[str, Any]], registry: Registry,
                  context: RunContext, *, batch_max: int = 64, flush_s: float = 0.25) -> None:
    """Run ``pipelines`` concurrently; every outcome goes out through ``send``; never raises
    for a pipeline's failure. ``send`` must be safe to call from several threads."""
    from rtc_annotator.artifacts.schemas import registry as schemas

    schemas.get("scene", 1)  # import the schemas before any pipeline's clock starts
    frame_based = []
    for name in pipelines:
        try:
            if registry.get(name).uses_frames:
                frame_based.append(name)
        except Exception:  # reported by its own thread below
            continue
    # set each pipeline up in turn (models, heavy imports) before any of them runs
    prepared = {name: _prepare(name, registry, options.get(name), context)
                for name in pipelines}
    frame_based = [n for n in frame_based if prepared[n].error is None]
    shared = SharedDecoder(video, len(frame_based)) if len(frame_based) > 1 else None
    if shared is not None:
        context.frame_source = shared
    threads = [
        threading.Thread(
            target=_run_one, name=f"pipeline-{name}", daemon=True,
            args=(name, registry, video, prepared[name], context, send, batch_max, flush_s,
                  shared if name in frame_based else None))
        for name in pipelines
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        if shared is not None:
            shared.close()
