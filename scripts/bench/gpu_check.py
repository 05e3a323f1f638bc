"""The Python half of scripts/bench/gpu.sh: model pipelines on CUDA vs published figures, and a
cancel that must free the job's GPU memory within 5 s. Prints one JSON line on stdout.

Each model pipeline runs as a one-pipeline job through ``JobRunner`` (the worker's path: a
child process on the slot's GPU) on the generated input of scripts/bench/pipelines.py with
the packaged weights. Figures use the child's own seconds for the pipeline (model load
included, process spawn not):

* transcript: RTFx (seconds of audio per second) vs the Open ASR Leaderboard's faster-whisper
  tiny.en figure on CUDA (RTFx 49.44);
* objects: ms per frame vs the ultralytics YOLOv8 table's A100 TensorRT ms for the checkpoint's
  size (batch 1, 640 px; our path is PyTorch fp16, so expect a ratio below 1);
* ocr: s per frame (easyocr publishes no speed figure: ``published`` is null).

Cancel: a long ``objects`` job is started; once its child holds GPU memory (nvidia-smi
``--query-compute-apps``) it is cancelled and the time until that memory is gone is measured
(target <= 5 s). Without a GPU everything runs on the CPU, the cancel check cancels a long
``scenes`` job and measures the time until its process is gone; the JSON says ``"gpu": false``
and why in ``no_gpu``. ``--quick``: a 6 s input (a smoke test of the whole script).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipelines as bench  # noqa: E402  (scripts/bench/pipelines.py: inputs and weights)

PUBLISHED: dict[str, dict[str, Any]] = {
    "transcript": {"figure": "RTFx", "value": 49.44,
                   "source": "Open ASR Leaderboard, faster-whisper/tiny.en, CUDA"},
    "objects": {"figure": "ms/frame", "source": "ultralytics YOLOv8 docs, A100 TensorRT, 640",
                "by_size": {"n": 0.99, "s": 1.20, "m": 1.83, "l": 2.39, "x": 3.53}},
    "ocr": {"figure": "s/frame", "value": None, "source": "easyocr publishes no speed figure"},
}
CANCEL_LIMIT_S = 5.0


def gpu_state() -> tuple[bool, str | None, dict[str, Any]]:
    """(usable, why not, facts). Usable needs nvidia-smi to list a GPU and torch to see CUDA."""
    facts: dict[str, Any] = {}
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False, "no NVIDIA GPU: nvidia-smi not found", facts
    done = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version",
                           "--format=csv,noheader,nounits"], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        return False, f"no NVIDIA GPU: nvidia-smi failed ({done.stderr.strip()[:200]})", facts
    name, memory, driver = (p.strip() for p in done.stdout.splitlines()[0].split(","))
    facts.update(gpu_name=name, gpu_memory_mb=int(float(memory)), driver=driver)
    code = ("import json, torch; print(json.dumps([torch.cuda.is_available(), "
            "torch.__version__, torch.version.cuda]))")
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if probe.returncode != 0:
        return False, "torch does not import: " + probe.stderr.strip()[-200:], facts
    ok, torch_version, cuda = json.loads(probe.stdout)
    facts.update(torch=torch_version, cuda=cuda)
    if not ok:
        return False, f"torch {torch_version} (CUDA {cuda}) cannot use the GPU", facts
    return True, None, facts


def gpu_memory_of(pid: int) -> int | None:
    """MiB of GPU memory process ``pid`` holds (None: it holds none)."""
    done = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                           "--format=csv,noheader,nounits"], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            return int(float(parts[1]))
    return None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def yolo_size(weights: Path) -> str | None:
    """n/s/m/l/x of a YOLOv8 checkpoint (from its saved yaml), in a fresh interpreter."""
    code = ("import sys, torch; ck = torch.load(sys.argv[1], map_location='cpu', "
            "weights_only=False); m = ck.get('model') or ck.get('ema'); "
            "y = getattr(m, 'yaml', {}) or {}; print(y.get('scale') or '')")
    done = subprocess.run([sys.executable, "-c", code, str(weights)], capture_output=True,
                          text=True)
    scale = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return scale if scale in ("n", "s", "m", "l", "x") else None


async def _job(settings: Any, video: Path, name: str, options: dict[str, Any]) -> Any:
    from rtc_annotator.worker.runner import JobRunner

    async with JobRunner(settings, slots=1) as runner:
        handle = await runner.submit(f"gpu-{name}", video, [name], bench.PROFILE,
                                     {name: options} if options else {})
        async for _ in handle.outputs():
            pass
        return await handle.wait()


async def _cancel(settings: Any, video: Path, on_gpu: bool) -> dict[str, Any]:
    from rtc_annotator.worker.runner import JobRunner

    async with JobRunner(settings, slots=1) as runner:
        # on a GPU a model job (it must hold GPU memory); without one any long job will do
        job = ({"objects": {"model": "people", "sample_every_ms": 40}} if on_gpu
               else {"scenes": {}})
        handle = await runner.submit("gpu-cancel", video, list(job), bench.PROFILE, job)
        held: int | None = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and handle.status.value in ("queued", "running"):
            if handle.pid is not None:
                if not on_gpu:
                    await asyncio.sleep(1.0)  # let it start decoding
                    break
                held = await asyncio.to_thread(gpu_memory_of, handle.pid)
                if held:
                    break
            await asyncio.sleep(0.2)
        if handle.status.value != "running":
            return {"ok": False, "error": f"the job was {handle.status.value} before the cancel"}
        pid = handle.pid or 0
        t0 = time.monotonic()
        await handle.cancel()
        freed_s = None
        while time.monotonic() - t0 < 30:
            gone = (await asyncio.to_thread(gpu_memory_of, pid) is None if on_gpu
                    else not _alive(pid))
            if gone:
                freed_s = time.monotonic() - t0
                break
            await asyncio.sleep(0.05)
    return {"ok": freed_s is not None and freed_s <= CANCEL_LIMIT_S,
            "freed_s": round(freed_s, 3) if freed_s is not None else None,
            "limit_s": CANCEL_LIMIT_S, "gpu_memory_mb_held": held,
            "checked": "GPU memory of the job process" if on_gpu else "job process exit (no GPU)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short input, few frames")
    parser.add_argument("--pipelines", default="transcript,objects,ocr")
    args = parser.parse_args()
    names = [p for p in args.pipelines.split(",") if p]
    unknown = set(names) - set(PUBLISHED)
    if unknown:
        raise SystemExit(f"unknown model pipeline(s): {', '.join(sorted(unknown))}")

    from rtc_annotator.config import Settings, WorkerSettings

    on_gpu, no_gpu, facts = gpu_state()
    print(f"gpu: {facts or no_gpu}", file=sys.stderr)
    out: dict[str, Any] = {"gpu": on_gpu, "no_gpu": no_gpu, "device": "cuda" if on_gpu else "cpu",
                           "quick": args.quick, **facts, "pipelines": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        video = bench.make_video(tmp, 2 if args.quick else bench.SECONDS_EACH)
        models = bench.models_dir(tmp / "models")
        from rtc_annotator.pipelines.metadata import read_metadata

        seconds = read_metadata(video)["duration_ms"] / 1000
        # the fall-detection checkpoint is a named model of this machine
        settings = Settings.model_validate({
            "worker": WorkerSettings(models_dir=models).model_dump(),
            "models": {"objects": {"people": {
                "path": str(models / "ultralytics" / "best.pt")}}}})
        every = {"objects": 40 if on_gpu and not args.quick else 2000,
                 "ocr": 6000 if args.quick else bench.OCR_EVERY_MS}
        for name in names:
            options: dict[str, Any] = {}
            if name in every:
                options["sample_every_ms"] = every[name]
            if name == "objects":
                options["model"] = "people"
            result = asyncio.run(_job(settings, video, name, options))
            row: dict[str, Any] = {"status": result.status.value,
                                   "outputs": result.counts.get(name, 0)}
            if result.status.value != "completed":
                row["error"] = result.error.model_dump() if result.error else None
                out["pipelines"][name] = row
                continue
            took = float(result.timings[name])
            pub = PUBLISHED[name]
            if name == "transcript":
                rtfx = seconds / took
                row.update(figure="RTFx", ours=round(rtfx, 2), published=pub["value"],
                           ratio=round(rtfx / float(pub["value"]), 3))
            else:
                from rtc_annotator.pipelines.frames import iter_frames

                frames = sum(1 for _ in iter_frames(video, every_ms=every[name], max_width=64))
                if name == "objects":
                    size = yolo_size(models / "ultralytics" / "best.pt")
                    ms = took * 1000 / frames
                    ref = pub["by_size"].get(size) if size else None
                    row.update(figure="ms/frame", frames=frames, ours=round(ms, 2),
                               yolo_size=size, published=ref,
                               ratio=round(ref / ms, 3) if ref else None)
                else:
                    row.update(figure="s/frame", frames=frames, ours=round(took / frames, 3),
                               published=None, ratio=None)
            row["source"] = pub["source"]
            row["seconds"] = round(took, 3)
            out["pipelines"][name] = row
            print(f"{name}: {row}", file=sys.stderr)
        # cancel: a longer input (the clip many times over) so the job is still running
        long = tmp / "long.mp4"
        loops = "19" if args.quick else "4"
        bench._run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", loops,
                    "-i", str(video), "-c", "copy", str(long)])
        out["cancel"] = asyncio.run(_cancel(settings, long, on_gpu))
    out["ok"] = (all(r.get("status") == "completed" for r in out["pipelines"].values())
                 and bool(out["cancel"].get("ok")))
    print(json.dumps(out, sort_keys=True))
    sys.exit(0 if out["ok"] else 1)


if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
