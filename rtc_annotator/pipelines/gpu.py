"""GPU detection: name and memory of each GPU, via nvidia-smi, else torch in a subprocess.

A machine without GPUs is a valid (CPU) worker. Detection never imports torch into the calling
process (a worker, or a job's process): importing it changes thread settings and costs jobs
that never use it, so torch is asked in a short subprocess, and only when the NVIDIA driver is
loaded but nvidia-smi is missing.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
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


_TORCH_QUERY = (
    "import json, torch\n"
    "out = []\n"
    "if torch.cuda.is_available():\n"
    "    for i in range(torch.cuda.device_count()):\n"
    "        p = torch.cuda.get_device_properties(i)\n"
    "        out.append([i, str(p.name), int(p.total_memory // (1024 * 1024))])\n"
    "print(json.dumps(out))\n"
)


def nvidia_driver_loaded() -> bool:
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


def _from_torch() -> list[GpuInfo] | None:
    if not nvidia_driver_loaded() or importlib.util.find_spec("torch") is None:
        return None
    try:
        proc = subprocess.run([sys.executable, "-c", _TORCH_QUERY], capture_output=True,
                              text=True, timeout=60, check=True)
        rows = json.loads(proc.stdout.strip().splitlines()[-1])
        return [GpuInfo(int(i), str(name), int(mb)) for i, name, mb in rows]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
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
    for source in (_from_nvidia_smi, _from_torch):
        found = source()
        if found is not None:
            return tuple(found)
    return ()
