"""Read a YOLO weights file's task and class names: ``python -m ... inspect_model PATH``.

Run as a subprocess by :func:`rtc_annotator.pipelines.models.inspect_yolo`, so that torch and
ultralytics (whose import sets ``OMP_NUM_THREADS=1`` and prints banners) never enter the
worker's process. Everything the libraries print goes to stderr; the one JSON line
``{"task": ..., "classes": [...]}`` or ``{"error": ...}`` goes to stdout.

ONNX exports are read without any library: ultralytics writes ``task`` and ``names`` into the
model's ``metadata_props``, which :func:`onnx_metadata` takes from the protobuf directly.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path
from typing import Any


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated protobuf")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("bad varint")


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """Top-level (field number, wire type, value) of a protobuf message."""
    out = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated protobuf")
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((num, wire, value))
    return out


def onnx_metadata(path: Path) -> dict[str, str]:
    """``metadata_props`` (ModelProto field 14) of an ONNX file as a dict."""
    props: dict[str, str] = {}
    for num, wire, value in _fields(path.read_bytes()):
        if num == 14 and wire == 2:
            entry = {n: v for n, w, v in _fields(value) if w == 2}
            props[entry.get(1, b"").decode("utf-8", "replace")] = entry.get(
                2, b"").decode("utf-8", "replace")
    return props


def _classes(names: Any) -> list[str]:
    if isinstance(names, str):
        names = ast.literal_eval(names)
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    return [str(n) for n in names]


def inspect(path: Path) -> dict[str, Any]:
    if path.suffix == ".onnx":
        try:
            meta = onnx_metadata(path)
        except (OSError, ValueError) as exc:
            return {"error": f"{path.name} is not a readable ONNX file ({exc})"}
        if "names" not in meta:
            return {"error": f"{path.name} has no ultralytics metadata (task, names): export "
                    "it with ultralytics (model.export(format='onnx'))"}
        return {"task": meta.get("task", "detect"), "classes": _classes(meta["names"])}
    os.environ["YOLO_OFFLINE"] = "1"
    try:
        from ultralytics import YOLO

        model = YOLO(str(path))
        return {"task": str(model.task), "classes": _classes(model.names)}
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        return {"error": f"cannot load {path.name} with ultralytics ({text[:200]})"}


def main(argv: list[str]) -> int:
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the libraries print goes to stderr
    sys.stdout = sys.stderr
    result = inspect(Path(argv[0])) if argv else {"error": "usage: inspect_model PATH"}
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
