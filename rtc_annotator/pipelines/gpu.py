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
import re
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
    """CUDA device index in this process: the position among the visible devices (what
    ``torch.cuda.device(i)`` takes); :func:`cuda_visible_entry` turns it back into the
    ``CUDA_VISIBLE_DEVICES`` entry that selects this GPU in a child process."""
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


def visible_devices(value: str | None) -> list[str] | None:
    """The entries of ``CUDA_VISIBLE_DEVICES`` as CUDA reads them; None when it is unset.

    Entries are physical indices (``0``), GPU UUIDs (``GPU-8f6e...``, a unique prefix is enough)
    or MIG instances (``MIG-1b2c...``, or the older ``MIG-GPU-8f6e.../1/0``), as SLURM and Run:AI
    set them. CUDA stops at the first entry it cannot read, and so does this; ``-1`` or an empty
    value hides every GPU.
    """
    if value is None:
        return None
    out: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        out.append(entry)
    return out


def cuda_visible_entry(ordinal: int, value: str | None) -> str:
    """What to put in a child's ``CUDA_VISIBLE_DEVICES`` to give it this process's GPU
    ``ordinal`` (the parent's own entry, so a UUID or MIG id stays one)."""
    entries = visible_devices(value)
    if entries is None or ordinal >= len(entries):
        return str(ordinal)
    return entries[ordinal]


_MIG_LINE = re.compile(
    r"^\s*MIG\s+(?P<profile>\S+)\s+Device\s+\d+:\s*\(UUID:\s*(?P<uuid>[^)\s]+)\)")
_GPU_LINE = re.compile(r"^GPU\s+(?P<index>\d+):\s*(?P<name>.*?)\s*\(UUID:\s*(?P<uuid>[^)\s]+)\)")
_MIG_MEMORY = re.compile(r"(?P<size>\d+(?:\.\d+)?)gb", re.IGNORECASE)


@dataclass(frozen=True)
class _Physical:
    index: int
    uuid: str
    name: str
    memory_mb: int


def _parse_query(text: str) -> list[_Physical]:
    """Rows of ``--query-gpu=index,uuid,name,memory.total`` (the uuid column is optional)."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        uuid = parts[1] if len(parts) >= 4 and parts[1].startswith("GPU-") else ""
        name_parts = parts[2:-1] if uuid else parts[1:-1]
        try:
            out.append(_Physical(int(parts[0]), uuid, ",".join(name_parts), int(float(parts[-1]))))
        except ValueError:
            continue
    return out


def _parse_mig_listing(text: str) -> dict[str, tuple[int, str, int]]:
    """MIG instances of ``nvidia-smi -L``: uuid -> (parent index, profile, memory MiB)."""
    out: dict[str, tuple[int, str, int]] = {}
    parent = -1
    for line in text.splitlines():
        gpu = _GPU_LINE.match(line)
        if gpu:
            parent = int(gpu.group("index"))
            continue
        mig = _MIG_LINE.match(line)
        if mig and parent >= 0:
            size = _MIG_MEMORY.search(mig.group("profile"))
            memory = int(float(size.group("size")) * 1024) if size else 0
            out[mig.group("uuid")] = (parent, mig.group("profile"), memory)
    return out


def parse_nvidia_smi(text: str, listing: str = "", visible: str | None = None,
                     *, use_env: bool = True) -> list[GpuInfo]:
    """The GPUs this process may use, from ``nvidia-smi --query-gpu=index,uuid,name,memory.total
    --format=csv,noheader,nounits`` (``text``) and ``nvidia-smi -L`` (``listing``, for MIG).

    ``visible`` is ``CUDA_VISIBLE_DEVICES`` (read from the environment unless given or
    ``use_env`` is false). Each GPU's ``index`` is its position in that list (CUDA's own
    numbering); a MIG instance is shown as its parent's name plus the profile
    (``NVIDIA A100 MIG 1g.10gb``) with the profile's memory. The list ends at the first entry
    that matches no device, as in CUDA.
    """
    physical = _parse_query(text)
    if visible is None and use_env:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    entries = visible_devices(visible)
    if entries is None:
        return [GpuInfo(p.index, p.name, p.memory_mb) for p in physical]
    migs = _parse_mig_listing(listing)
    out: list[GpuInfo] = []
    for entry in entries:
        ordinal = len(out)
        if entry.startswith("MIG-"):
            mig = migs.get(entry)
            if mig is None:
                break
            parents = [p for p in physical if p.index == mig[0]]
            name = f"{parents[0].name} MIG {mig[1]}" if parents else f"MIG {mig[1]}"
            out.append(GpuInfo(ordinal, name, mig[2]))
            continue
        if entry.isdigit():
            found = [p for p in physical if p.index == int(entry)]
        else:
            found = [p for p in physical if p.uuid and p.uuid.startswith(entry)]
        if len(found) != 1:
            break
        out.append(GpuInfo(ordinal, found[0].name, found[0].memory_mb))
    if entries and not out:
        log.warning("no GPU matches CUDA_VISIBLE_DEVICES", ctx={"value": visible})
    return out


def _from_nvidia_smi() -> list[GpuInfo] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        )
        listing = ""
        entries = visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES")) or []
        if any(e.startswith("MIG-") for e in entries):
            listing = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10,
                                     check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("nvidia-smi failed", ctx={"error": type(exc).__name__})
        return None
    return parse_nvidia_smi(proc.stdout, listing)


@functools.lru_cache(maxsize=1)
def detect_gpus() -> tuple[GpuInfo, ...]:
    """The GPUs of this machine (empty on a CPU-only machine). Cached for the process."""
    for source in (_from_nvidia_smi, _from_torch):
        found = source()
        if found is not None:
            return tuple(found)
    return ()
