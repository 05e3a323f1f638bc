"""`rtc-annotator models list` and `models add PATH`: the models this machine holds.

``models add`` copies (or, with ``--link``, links) a whisper folder, a YOLO weights file or an
easyocr folder into ``[worker] models_dir`` and records it in ``models_dir/models.json`` under a
name; jobs then ask for it with the pipeline option ``model`` and workers advertise it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import typer

from rtc_annotator.commands.common import ConfigOption, fail, print_json, settings_from
from rtc_annotator.config import MODEL_PIPELINES, MODEL_PROFILES, Settings
from rtc_annotator.errors import RtcAnnotatorError
from rtc_annotator.pipelines.models import (
    EASYOCR_DETECTORS,
    SUBDIRS,
    YOLO_SUFFIXES,
    Catalog,
    ModelEntry,
    check_name,
    describe,
    meta_cache,
    read_manifest,
    write_manifest,
)


def model_rows(settings: Settings) -> list[dict[str, Any]]:
    """One row per known model: where it is, whether it is usable, which profiles use it."""
    catalog = Catalog.from_settings(settings)
    cache = meta_cache(settings)
    rows = []
    for pipeline in MODEL_PIPELINES:
        for name, entry in sorted(catalog.entries.get(pipeline, {}).items()):
            problem = entry.problem()
            info: dict[str, Any] = {"pipeline": pipeline, "name": name, "kind": entry.kind,
                                    "path": str(entry.path), "source": entry.source}
            if not problem:
                described = describe(entry, cache)
                problem = str(described.pop("error", ""))
                info.update({k: v for k, v in described.items() if k not in info})
            info["usable"] = not problem
            info["problem"] = problem
            info["profiles"] = [p for p in MODEL_PROFILES
                                if catalog.profile_model(pipeline, p) == name]
            if entry.source == "default" and problem and not info["profiles"]:
                continue
            rows.append(info)
    return rows


def list_cmd(
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Models this machine holds (and the profiles' models it lacks), with the reason."""
    settings = settings_from(config)
    try:
        rows = model_rows(settings)
    except RtcAnnotatorError as exc:
        fail(exc.one_line())
    if as_json:
        print_json(rows)
        return
    for r in rows:
        state = "ok     " if r["usable"] else "MISSING" if r["source"] == "default" else "BROKEN "
        profiles = f" [{', '.join(r['profiles'])}]" if r["profiles"] else ""
        classes = f" classes: {', '.join(r['classes'][:8])}" if r.get("classes") else ""
        note = f" -- {r['problem']}" if r["problem"] else ""
        typer.echo(f"{r['pipeline']:<11} {r['name']:<20} {state} {r['kind']}{profiles}"
                   f"{classes} ({r['path']}){note}")


def guess_pipeline(path: Path) -> str:
    """Which pipeline a file or folder is for, from its contents."""
    if path.is_file() and path.suffix in YOLO_SUFFIXES:
        return "objects"
    if path.is_dir() and (path / "model.bin").is_file():
        return "transcript"
    if path.is_dir() and any((path / f).is_file() for f in EASYOCR_DETECTORS.values()):
        return "ocr"
    fail(f"cannot tell which pipeline {path} is for (a YOLO .pt/.onnx file, a faster-whisper "
         "folder with model.bin, or an easyocr folder with craft_mlt_25k.pth): use --pipeline")


def _recognizer(path: Path, detector: str, given: str | None) -> str:
    if given:
        return given
    detector_file = EASYOCR_DETECTORS[detector]
    found = sorted(p.stem for p in path.glob("*.pth") if p.name != detector_file)
    if len(found) != 1:
        fail(f"{path} holds {len(found)} recognizer files ({', '.join(found) or 'none'}): "
             "name one with --recognizer")
    return found[0]


def add_model(settings: Settings, source: Path, *, pipeline: str, name: str, link: bool,
              replace: bool, recognizer: str | None = None, detector: str = "craft",
              languages: tuple[str, ...] = ("en",)) -> ModelEntry:
    """Copy or link ``source`` into models_dir, check that it loads, record it; return it."""
    models_dir = settings.worker.models_dir
    if models_dir is None:
        fail("[worker] models_dir is not set: set it in the config (or "
             "RTC_ANNOTATOR_WORKER_MODELS_DIR) to the folder that holds the models")
    check_name(name)
    source = source.expanduser().resolve()
    if pipeline == "objects":
        if source.suffix not in YOLO_SUFFIXES:
            fail(f"{source}: objects models are .pt or .onnx files")
        filename = name if name.endswith(source.suffix) else name + source.suffix
        dest = models_dir / SUBDIRS[pipeline] / filename
    else:
        dest = models_dir / SUBDIRS[pipeline] / name
    entry = ModelEntry(pipeline, name, dest, "models.json",
                       recognizer=_recognizer(source, detector, recognizer)
                       if pipeline == "ocr" else "english_g2",
                       detector=detector, languages=languages)
    probe = ModelEntry(pipeline, name, source, "models.json", recognizer=entry.recognizer,
                       detector=detector, languages=languages)
    problem = probe.problem()
    if not problem:
        problem = str(describe(probe, meta_cache(settings)).get("error", ""))
    if problem:
        fail(f"{source} is not a usable {pipeline} model: {problem}")
    existing = [e for e in read_manifest(models_dir) if (e.pipeline, e.name) != (pipeline, name)]
    if (dest.exists() or dest.is_symlink()) and not replace:
        fail(f"{dest} already exists: choose another --name, or pass --replace")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.is_dir():
        shutil.rmtree(dest)
    if link:
        os.symlink(source, dest)
    elif source.is_dir():
        shutil.copytree(source, dest)
    else:
        shutil.copy2(source, dest)
    write_manifest(models_dir, [*existing, entry])
    return entry


def add_cmd(
    path: Path = typer.Argument(..., help="Weights file (YOLO .pt/.onnx) or model folder."),
    name: str | None = typer.Option(None, "--name", help="Name jobs use (default: file or "
                                    "folder name)."),
    pipeline: str | None = typer.Option(None, "--pipeline", help="transcript, objects or ocr "
                                        "(default: guessed from the files)."),
    link: bool = typer.Option(False, "--link", help="Link instead of copying."),
    replace: bool = typer.Option(False, "--replace", help="Replace a model of that name."),
    recognizer: str | None = typer.Option(None, "--recognizer", help="ocr: easyocr "
                                          "recognizer (default: the one .pth besides the "
                                          "detector)."),
    detector: str = typer.Option("craft", "--detector", help="ocr: craft or dbnet18."),
    languages: str = typer.Option("en", "--languages", help="ocr: comma-separated."),
    config: ConfigOption = None,
) -> None:
    """Copy (or link) a model into [worker] models_dir and record it under a name."""
    settings = settings_from(config)
    if not path.exists():
        fail(f"{path}: no such file or folder")
    if pipeline is not None and pipeline not in MODEL_PIPELINES:
        fail(f"unknown model pipeline {pipeline!r}; use one of {', '.join(MODEL_PIPELINES)}")
    if detector not in EASYOCR_DETECTORS:
        fail(f"unknown easyocr detector {detector!r}; use one of {', '.join(EASYOCR_DETECTORS)}")
    kind = pipeline or guess_pipeline(path)
    try:
        entry = add_model(settings, path, pipeline=kind, name=name or path.name, link=link,
                          replace=replace, recognizer=recognizer, detector=detector,
                          languages=tuple(x.strip() for x in languages.split(",") if x.strip()))
    except (RtcAnnotatorError, OSError) as exc:
        fail(exc.one_line() if isinstance(exc, RtcAnnotatorError) else f"cannot add: {exc}")
    how = "linked" if link else "copied"
    typer.echo(f"{how} {kind} model {entry.name!r} -> {entry.path}")
    typer.echo(f"use it: --options '{{\"{kind}\": {{\"model\": \"{entry.name}\"}}}}', or "
               f"[profiles.<profile>] {kind} = \"{entry.name}\" in the config")


def register(models_app: typer.Typer) -> None:
    models_app.command("list")(list_cmd)
    models_app.command("add")(add_cmd)
