"""GPU detection: name and memory of each GPU, via torch, else nvidia-smi, else none.

A machine without GPUs is a valid (CPU) worker. Detection never creates a CUDA context in the
calling process (torch is asked for device properties only).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass

from rtc_annotator.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as the worker advertises it."""

    index: int
    """CUDA device index on this machine."""
    name: str
    """Product name, e.g. NVIDIA H200."""
    memory_mb: int
    """Total memory in MiB."""


def _from_torch() -> list[GpuInfo] | None:
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        out = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            out.append(GpuInfo(i, str(props.name), int(props.total_memory // (1024 * 1024))))
        return out
    except Exception as exc:
        log.warning("torch GPU query failed", ctx={"error": type(exc).__name__})
        return None


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """Parse ``nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits``."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        try:
            out.append(GpuInfo(int(parts[0]), ",".join(parts[1:-1]), int(float(parts[-1]))))
        except ValueError:
            continue
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        wanted = [v.strip() for v in visible.split(",") if v.strip().isdigit()]
        out = [g for g in out if str(g.index) in wanted]
    return out


def _from_nvidia_smi() -> list[GpuInfo] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("nvidia-smi failed", ctx={"error": type(exc).__name__})
        return None
    return parse_nvidia_smi(proc.stdout)


@functools.lru_cache(maxsize=1)
def detect_gpus() -> tuple[GpuInfo, ...]:
    """The GPUs of this machine (empty on a CPU-only machine). Cached for the process."""
    for source in (_from_torch, _from_nvidia_smi):
        found = source()
        if found is not None:
            return tuple(found)
    return ()
