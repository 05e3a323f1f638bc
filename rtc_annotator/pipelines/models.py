"""The models a machine holds: names, files, and which one a job gets.

A model pipeline (``transcript``, ``objects``, ``ocr``) runs one *named* model. Names come from
three places, later ones replacing earlier ones of the same pipeline and name:

1. the built-in names of the profile table (:mod:`.profiles`), in the standard layout under
   ``[worker] models_dir`` (``faster-whisper/<size>/``, ``ultralytics/<file>``, ``easyocr/``);
2. ``<models_dir>/models.json``, written by ``rtc-annotator models add``;
3. ``[models.<pipeline>.<name>]`` tables of the configuration.

A job gets the model its ``model`` option names, else the one its profile names
(``[profiles.<profile>]``, else the built-in table). :class:`Catalog` holds all of this as
plain data, so the job's child process resolves the model itself: a missing model fails that
pipeline only.

Nothing here imports a model library: file checks run in this process; reading a YOLO file's
task and class names runs in a short subprocess (:mod:`.inspect_model`), so the worker and its
job processes stay free of torch and ultralytics (their import changes thread settings).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from rtc_annotator.config import MODEL_PIPELINES, MODEL_PROFILES, Settings
from rtc_annotator.pipelines.base import (
    ModelInvalid,
    ModelNotAvailable,
    OptionsError,
    PipelineOptions,
)

MANIFEST = "models.json"
"""File in models_dir where ``models add`` records what it added."""
KINDS = {"transcript": "faster-whisper", "objects": "yolo", "ocr": "easyocr"}
"""Model format of each model pipeline."""
SUBDIRS = {"transcript": "faster-whisper", "objects": "ultralytics", "ocr": "easyocr"}
"""Folder of each model pipeline under models_dir."""
EASYOCR_DETECTORS = {"craft": "craft_mlt_25k.pth", "dbnet18": "pretrained_ic15_res18.pt"}
"""easyocr's text detectors and the weights file each one reads."""
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A model name: letters, digits and ._- (max 64), like every name on the wire."""
YOLO_SUFFIXES = (".pt", ".onnx")


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise OptionsError(f"model name {name!r} is not a plain name",
                           hint="use letters, digits and ._- (at most 64), e.g. tiny.en")
    return name


@dataclass(frozen=True)
class ModelEntry:
    """One model this machine may hold."""

    pipeline: str
    """transcript, objects or ocr."""
    name: str
    """Name jobs and profiles use."""
    path: Path
    """Absolute: the weights file (objects) or folder (transcript, ocr)."""
    source: str
    """Where the name comes from: ``default``, ``models.json`` or ``config``."""
    recognizer: str = "english_g2"
    """ocr: easyocr recognizer network (``<recognizer>.pth`` in the folder)."""
    detector: str = "craft"
    """ocr: easyocr text detector."""
    languages: tuple[str, ...] = ("en",)
    """ocr: languages the recognizer reads."""

    @property
    def kind(self) -> str:
        return KINDS[self.pipeline]

    def files(self) -> list[Path]:
        """The files that must exist for the model to load."""
        if self.pipeline == "transcript":
            return [self.path / "model.bin", self.path / "config.json"]
        if self.pipeline == "ocr":
            return [self.path / EASYOCR_DETECTORS[self.detector],
                    self.path / f"{self.recognizer}.pth"]
        return [self.path]

    def problem(self) -> str:
        """Why the model cannot be used (missing files, wrong format); "" when it can."""
        if self.pipeline == "objects" and self.path.suffix not in YOLO_SUFFIXES:
            return f"{self.path} is not a .pt or .onnx YOLO weights file"
        missing = [str(f) for f in self.files() if not f.is_file()]
        return f"missing {', '.join(missing)}" if missing else ""

    def to_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "name": self.name, "path": str(self.path),
                "source": self.source, "recognizer": self.recognizer,
                "detector": self.detector, "languages": list(self.languages)}


def default_entries(models_dir: Path) -> list[ModelEntry]:
    """The names of the built-in profile table, in the standard layout of ``models_dir``."""
    from rtc_annotator.pipelines.profiles import PROFILES

    out: dict[tuple[str, str], ModelEntry] = {}
    for table in PROFILES.values():
        for pipeline, spec in table.items():
            base = models_dir / SUBDIRS[pipeline]
            path = base if pipeline == "ocr" else base / spec.model
            out[(pipeline, spec.model)] = ModelEntry(
                pipeline, spec.model, path, "default",
                recognizer=spec.model if pipeline == "ocr" else "english_g2")
    return list(out.values())


def read_manifest(models_dir: Path) -> list[ModelEntry]:
    """Entries recorded by ``models add`` (paths relative to ``models_dir``)."""
    path = models_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ModelNotAvailable(f"cannot read {path}: {exc}",
                                hint="fix or remove the file; `models add` writes it") from None
    out = []
    for item in data.get("models", []) if isinstance(data, dict) else []:
        try:
            out.append(ModelEntry(
                str(item["pipeline"]), str(item["name"]), models_dir / str(item["path"]),
                MANIFEST, recognizer=str(item.get("recognizer") or "english_g2"),
                detector=str(item.get("detector") or "craft"),
                languages=tuple(item.get("languages") or ("en",))))
        except (KeyError, TypeError):
            continue
    return [e for e in out if e.pipeline in MODEL_PIPELINES and NAME_RE.match(e.name)]


def write_manifest(models_dir: Path, entries: list[ModelEntry]) -> None:
    """Record ``entries`` (which lie under models_dir) in the manifest, atomically."""
    items = [{"pipeline": e.pipeline, "name": e.name,
              "path": str(e.path.relative_to(models_dir)),
              **({"recognizer": e.recognizer, "detector": e.detector,
                  "languages": list(e.languages)} if e.pipeline == "ocr" else {})}
             for e in entries]
    tmp = models_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"models": items}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(models_dir / MANIFEST)


@dataclass
class Catalog:
    """Every model of this machine by pipeline and name, and each profile's choice."""

    models_dir: Path | None = None
    entries: dict[str, dict[str, ModelEntry]] = field(default_factory=dict)
    profile_choice: dict[str, dict[str, str]] = field(default_factory=dict)
    """profile -> pipeline -> model name (overrides of the built-in table)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        models_dir = settings.worker.models_dir
        found: list[ModelEntry] = []
        if models_dir is not None:
            found += default_entries(models_dir)
            found += read_manifest(models_dir)
        for pipeline, named in settings.models.items():
            for name, ms in named.items():
                check_name(name)
                path = ms.path
                if not path.is_absolute():
                    if models_dir is None:
                        raise ModelNotAvailable(
                            f"[models.{pipeline}.{name}] path {path} is relative and "
                            "[worker] models_dir is not set",
                            hint="give an absolute path or set [worker] models_dir")
                    path = models_dir / path
                found.append(ModelEntry(
                    pipeline, name, path, "config", recognizer=ms.recognizer or "english_g2",
                    detector=ms.detector or "craft", languages=tuple(ms.languages or ("en",))))
        entries: dict[str, dict[str, ModelEntry]] = {p: {} for p in MODEL_PIPELINES}
        for e in found:
            entries[e.pipeline][e.name] = e
        choice: dict[str, dict[str, str]] = {
            str(profile): {str(k): v for k, v in table.items()}
            for profile, table in settings.profiles.items()}
        return cls(models_dir, entries, choice)

    def profile_model(self, pipeline: str, profile: str) -> str:
        """The model name ``profile`` uses for ``pipeline``."""
        from rtc_annotator.pipelines.profiles import model_spec

        chosen = self.profile_choice.get(profile, {}).get(pipeline)
        if chosen:
            return chosen
        spec = model_spec(pipeline, profile)
        if spec is None:
            raise OptionsError(f"pipeline {pipeline} has no model")
        return spec.model

    def resolve(self, pipeline: str, profile: str, requested: str | None) -> ModelEntry:
        """The model a job gets; :class:`ModelNotAvailable` naming it and the fix if absent."""
        name = requested or self.profile_model(pipeline, profile)
        why = "asked for by the job" if requested else f"profile {profile}"
        entry = self.entries.get(pipeline, {}).get(name)
        held = ", ".join(self.held(pipeline)) or "none"
        if entry is None:
            raise ModelNotAvailable(
                f"{pipeline}: this machine holds no model named {name!r} ({why}); "
                f"models held for {pipeline}: {held}",
                hint=f"add it with `rtc-annotator models add PATH --pipeline {pipeline} "
                f"--name {name}` or a [models.{pipeline}.{name}] table in the config, "
                f"or choose a held model with the {pipeline} option model")
        problem = entry.problem()
        if problem:
            where = f"{self.models_dir}" if self.models_dir else "[worker] models_dir (unset)"
            raise ModelNotAvailable(
                f"{pipeline}: model {name!r} ({why}) is not usable: {problem}",
                hint=f"copy the weights there with `rtc-annotator models add PATH --pipeline "
                f"{pipeline} --name {name}` (models_dir: {where}), or on a machine with "
                f"internet `rtc-annotator models fetch --profile {profile}`")
        return entry

    def held(self, pipeline: str) -> list[str]:
        """Names of the models of ``pipeline`` whose files are present."""
        return sorted(n for n, e in self.entries.get(pipeline, {}).items() if not e.problem())


# ---------------------------------------------------------------------------- fingerprints


_lock = threading.Lock()


def _stat_key(path: Path) -> list[tuple[str, int, int]]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out = []
    for f in files:
        st = f.stat()
        out.append((str(f.relative_to(path)) if path.is_dir() else f.name, st.st_size,
                    st.st_mtime_ns))
    return out


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _sha256(path: Path) -> str:
    """sha256 of a file; of a folder: of its sorted "relative path, file sha256" lines."""
    if not path.is_dir():
        return _file_sha(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}\0{_file_sha(f)}\n".encode())
    return h.hexdigest()


class MetaCache:
    """sha256 and inspection results per model path, kept while size and mtime stay the same,
    in a JSON file of a writable cache dir (never in models_dir, which may be read-only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._data: dict[str, Any] = {}
        if path is not None:
            try:
                self._data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._data = {}

    def get(self, model: Path, compute: Any) -> dict[str, Any]:
        key = str(model)
        stamp = _stat_key(model)
        with _lock:
            hit = self._data.get(key)
            if isinstance(hit, dict) and hit.get("stamp") == [list(s) for s in stamp]:
                return dict(hit["value"])
        value = compute(model)
        with _lock:
            self._data[key] = {"stamp": [list(s) for s in stamp], "value": value}
            self._save()
        return dict(value)

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self._data), encoding="utf-8")
            tmp.replace(self.path)
        except OSError:
            pass  # a cache only: recomputed next time


def inspect_yolo(path: Path, timeout_s: float = 120.0) -> dict[str, Any]:
    """Task and class names of a YOLO weights file, read in a subprocess.

    Returns ``{"task": "detect", "classes": [...]}`` or ``{"error": "..."}``.
    """
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "rtc_annotator.pipelines.inspect_model", str(path)],
            capture_output=True, text=True, timeout=timeout_s,
            env={**os.environ, "YOLO_OFFLINE": "1"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"cannot inspect {path.name}: {type(exc).__name__}"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"cannot inspect {path.name}: {tail}"[:300]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def describe(entry: ModelEntry, cache: MetaCache) -> dict[str, Any]:
    """What a worker advertises for a held model: name, kind, sha256, classes (detectors).

    ``error`` is set when the model is present but cannot be used (not a detector, damaged)."""
    info: dict[str, Any] = {"pipeline": entry.pipeline, "name": entry.name, "kind": entry.kind}

    def compute(path: Path) -> dict[str, Any]:
        value: dict[str, Any] = {"sha256": _sha256(path)}
        if entry.pipeline == "objects":
            value.update(inspect_yolo(path))
        return value

    meta = cache.get(entry.path, compute)
    info["sha256"] = meta.get("sha256", "")
    if entry.pipeline == "objects":
        if "error" in meta:
            info["error"] = str(meta["error"])
        elif meta.get("task") != "detect":
            info["error"] = (f"{entry.path.name} is a YOLO {meta.get('task')} model, not a "
                             "detector (objects needs task=detect)")
        info["classes"] = [str(c) for c in meta.get("classes", [])]
    elif entry.pipeline == "ocr":
        info["languages"] = list(entry.languages)
    return info


def meta_cache(settings: Settings) -> MetaCache:
    return MetaCache(settings.worker.cache_dir / "models-meta.json")


def profiles_using(catalog: Catalog, pipeline: str, usable: set[str]) -> tuple[str, ...]:
    """Profiles whose model for ``pipeline`` is among ``usable``."""
    return tuple(p for p in MODEL_PROFILES if catalog.profile_model(pipeline, p) in usable)


def model_for(context: Any, pipeline: str, requested: str | None) -> ModelEntry:
    """The model a running job uses (``context`` is its RunContext)."""
    catalog = context.catalog
    if catalog is None:
        from rtc_annotator.config import WorkerSettings

        catalog = Catalog.from_settings(
            Settings(worker=WorkerSettings(models_dir=context.models_dir)))
    entry: ModelEntry = catalog.resolve(pipeline, context.profile, requested)
    return entry


def load_failed(entry: ModelEntry, exc: BaseException, fix: str) -> ModelInvalid:
    """The error for weights that are present but do not load."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    if len(text) > 200:
        text = text[:200] + "..."
    return ModelInvalid(
        f"{entry.pipeline}: cannot load model {entry.name!r} from {entry.path} ({text})",
        hint=f"{fix}; then add it again with `rtc-annotator models add PATH --pipeline "
        f"{entry.pipeline} --name {entry.name}`")


def model_option(value: str | None) -> str | None:
    """Validator of every pipeline's ``model`` option (a name, never a path)."""
    if value is not None and not NAME_RE.match(value):
        raise ValueError("must be a model name (letters, digits and ._-), not a path; "
                         "see `rtc-annotator models list`")
    return value


class ModelOptions(PipelineOptions):
    """Options of a pipeline that runs a named model (transcript, objects, ocr)."""

    model: str | None = Field(
        default=None, description="Model name (`rtc-annotator models list`); default: the "
        "profile's.")

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: str | None) -> str | None:
        return model_option(v)
