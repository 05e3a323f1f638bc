"""`rtc-annotator doctor`: each check against real things on 127.0.0.1 (a real signaling
server, a real SQLite store, real UDP sockets answering or ignoring STUN, a closed port), and
the command through its real entry point."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aioice import stun

from rtc_annotator import doctor
from rtc_annotator.config import IceServer, Settings, SignalingSettings
from rtc_annotator.doctor import Check, GpuView, Status
from rtc_annotator.pipelines.registry import PipelineStatus
from rtc_annotator.signaling_client import SignalingClient
from rtc_annotator.store.repository import Store
from signaling.app import SignalingServer
from signaling.config import ServerConfig

ADMIN_SECRET = "doctor-admin-secret"


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SignalingServer]:
    cfg = ServerConfig(state_path=tmp_path / "state.sqlite3", admin_secret=ADMIN_SECRET,
                       host="127.0.0.1", port=0, rate_per_s=1000.0, rate_burst=1000.0)
    srv = SignalingServer(cfg)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def worker_token(server: SignalingServer) -> str:
    root = SignalingClient(server.url, admin_secret=ADMIN_SECRET, reconnect=False)
    await root.connect()
    created = await root.request("create_room", name="lab")
    await root.close()
    admin = SignalingClient(server.url, token=created["token"], reconnect=False)
    await admin.connect()
    token = (await admin.request("issue_token", role="worker", ttl_s=600))["token"]
    await admin.close()
    return str(token)


# --------------------------------------------------------------------------- pure checks


def test_exit_code() -> None:
    ok = Check("a", Status.OK, "")
    warn = Check("b", Status.WARN, "", "fix")
    fail = Check("c", Status.FAIL, "", "fix")
    assert doctor.exit_code([]) == 0
    assert doctor.exit_code([ok, ok]) == 0
    assert doctor.exit_code([ok, warn]) == 0          # a warning is not a failed check
    assert doctor.exit_code([fail, warn, ok]) == 1    # 2 is for usage/config errors only
    assert fail.to_dict() == {"name": "c", "status": "fail", "detail": "", "fix": "fix"}


def test_python_version() -> None:
    assert doctor.check_python((3, 11, 4), "CPython").status is Status.OK
    old = doctor.check_python((3, 10, 12), "CPython")
    assert old.status is Status.FAIL and "3.11" in old.fix


def test_packages_required_fail_optional_ok() -> None:
    installed = {"aiortc": "1.9.0", "websockets": "13.0", "aiohttp": "3.9", "sqlalchemy": "2.0",
                 "alembic": "1.13", "torch": "2.4.0"}
    checks = {c.name: c for c in doctor.check_packages(installed.get)}
    assert checks["package aiortc"].status is Status.OK
    assert checks["package aiortc"].detail == "1.9.0"
    assert checks["package aioice"].status is Status.FAIL
    assert checks["package faster-whisper"].status is Status.OK
    assert "absent" in checks["package faster-whisper"].detail
    assert "transcribe" in checks["package faster-whisper"].detail
    assert checks["package torch"].detail == "2.4.0"
    real = {c.name: c for c in doctor.check_packages()}
    assert real["package aiortc"].status is Status.OK and real["package aiortc"].detail[0].isdigit()


def test_gpus() -> None:
    h200 = [("NVIDIA H200", 143771)]
    assert doctor.check_gpus(GpuView(None, None)).status is Status.OK
    assert "CPU only" in doctor.check_gpus(GpuView([], None)).detail
    seen = doctor.check_gpus(GpuView(h200, h200))
    assert seen.status is Status.OK and "NVIDIA H200 (143771 MiB)" in seen.detail
    assert doctor.check_gpus(GpuView(None, h200)).status is Status.OK
    cpu_torch = doctor.check_gpus(GpuView([], h200))
    assert cpu_torch.status is Status.WARN and "CUDA build of torch" in cpu_torch.fix
    over = doctor.check_gpus(GpuView(h200, h200), job_slots=3)
    assert over.status is Status.WARN and "job_slots" in over.fix


def test_pipelines_from_statuses() -> None:
    rows = [
        PipelineStatus("scenes", "1", ("scene",), True, "", ("fast", "balanced")),
        PipelineStatus("ocr", "1", ("ocr.text",), False,
                       "not offered: not listed in [worker] pipelines", ()),
        PipelineStatus("objects", "1", ("object.detection",), False,
                       "cannot import torch: ModuleNotFoundError", ()),
        PipelineStatus("transcript", "1", ("transcript.segment",), False,
                       "[worker] models_dir is not set", ()),
    ]
    checks = {c.name: c for c in doctor.check_pipelines(rows)}
    assert checks["pipeline scenes"].status is Status.OK
    assert "fast, balanced" in checks["pipeline scenes"].detail
    assert checks["pipeline ocr"].status is Status.OK
    assert checks["pipeline objects"].status is Status.WARN
    assert "[detect,gpu]" in checks["pipeline objects"].fix
    assert checks["pipeline transcript"].status is Status.WARN
    assert "models fetch" in checks["pipeline transcript"].fix


# --------------------------------------------------------------------------- storage


def test_storage_backends(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (tmp_path / "file").write_text("x")
    settings = Settings.model_validate({"storage": {
        "good": {"base_path": str(share)},
        "gone": {"base_path": str(tmp_path / "missing")},
        "file": {"base_path": str(tmp_path / "file")},
    }})
    checks = {c.name: c for c in doctor.check_storage(settings)}
    assert checks["storage good"].status is Status.OK
    assert checks["storage gone"].status is Status.FAIL
    assert "does not exist" in checks["storage gone"].detail
    assert "[storage.gone]" in checks["storage gone"].fix
    assert checks["storage file"].status is Status.FAIL
    none = doctor.check_storage(Settings())
    assert [c.status for c in none] == [Status.OK]


def test_storage_read_only_is_a_warning(tmp_path: Path) -> None:
    """Root may write to a mode-0555 directory, so as root (CI) the share is a read-only bind
    mount in a private mount namespace, as a read-only NFS export looks to the worker."""
    share = tmp_path / "ro"
    share.mkdir()
    code = ("from pathlib import Path; from rtc_annotator import doctor; "
            f"c = doctor.check_storage_backend('ro', Path({str(share)!r})); "
            "print(c.status.name); print(c.detail)")
    if os.geteuid() == 0:
        script = (f"mount --bind {share} {share} && mount -o remount,bind,ro {share} {share} "
                  f"&& exec {sys.executable} -c \"{code}\"")
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "--",
                            "sh", "-c", script], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        status, detail = r.stdout.splitlines()[:2]
    else:
        share.chmod(0o555)
        try:
            check = doctor.check_storage_backend("ro", share)
        finally:
            share.chmod(0o755)
        status, detail = check.status.name, check.detail
    assert status == Status.WARN.name and "not writable" in detail


def test_worker_dirs(tmp_path: Path) -> None:
    settings = Settings.model_validate({"worker": {
        "cache_dir": str(tmp_path / "new" / "cache"), "models_dir": str(tmp_path / "nomodels")}})
    checks = {c.name: c for c in doctor.check_worker_dirs(settings)}
    assert checks["worker cache_dir"].status is Status.OK
    assert "can be created" in checks["worker cache_dir"].detail
    assert checks["worker models_dir"].status is Status.FAIL
    assert "models fetch" in checks["worker models_dir"].fix


# --------------------------------------------------------------------------- database


async def test_database_missing_file_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite3"
    check = await doctor.check_database(f"sqlite+aiosqlite:///{db}")
    assert check.status is Status.WARN and "does not exist" in check.detail
    assert not db.exists()


async def test_database_migrated(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}"
    store = await Store.open(url)
    await store.close()
    check = await doctor.check_database(url)
    assert check.status is Status.OK, check
    from rtc_annotator.store import migrate

    assert f"revision {migrate.head_revision()}" in check.detail


async def test_database_without_schema(tmp_path: Path) -> None:
    db = tmp_path / "empty.sqlite3"
    sqlite3.connect(db).close()
    check = await doctor.check_database(f"sqlite+aiosqlite:///{db}")
    assert check.status is Status.WARN and "no schema" in check.detail
    assert "db upgrade" in check.fix


async def test_database_unreachable_postgres() -> None:
    url = f"postgresql+asyncpg://annot:s3cret@127.0.0.1:{closed_port()}/annot"
    check = await doctor.check_database(url, timeout_s=3.0)
    assert check.status is Status.FAIL
    assert "s3cret" not in check.detail and "***" in check.detail
    assert "[database] url" in check.fix


@pytest.mark.postgres
async def test_database_postgres_reachable(pg_url: str) -> None:
    check = await doctor.check_database(pg_url)
    assert check.status in (Status.OK, Status.WARN), check
    assert "reachable" in check.detail


# --------------------------------------------------------------------------- signaling


async def test_signaling_hello_ok(server: SignalingServer, worker_token: str) -> None:
    settings = SignalingSettings(url=server.url, token=worker_token)
    check = await doctor.check_signaling(settings, timeout_s=5.0)
    assert check.status is Status.OK, check
    assert "as worker in room 'lab'" in check.detail


async def test_signaling_wrong_room(server: SignalingServer, worker_token: str) -> None:
    settings = SignalingSettings(url=server.url, token=worker_token, room="other")
    check = await doctor.check_signaling(settings, timeout_s=5.0)
    assert check.status is Status.WARN and "'other'" in check.detail


async def test_signaling_bad_token(server: SignalingServer) -> None:
    settings = SignalingSettings(url=server.url, token="rtca1.bad.token")
    check = await doctor.check_signaling(settings, timeout_s=5.0)
    assert check.status is Status.FAIL
    assert "TOKEN_INVALID" in check.detail


async def test_signaling_unreachable() -> None:
    settings = SignalingSettings(url=f"ws://127.0.0.1:{closed_port()}/ws", token="rtca1.x.y")
    check = await doctor.check_signaling(settings, timeout_s=2.0)
    assert check.status is Status.FAIL
    assert "CONNECTION_LOST" in check.detail
    assert "[signaling] url" in check.fix


async def test_signaling_without_token_is_not_contacted() -> None:
    check = await doctor.check_signaling(SignalingSettings(url="ws://192.0.2.1:1/ws"))
    assert check.status is Status.WARN and "not contacted" in check.detail


# --------------------------------------------------------------------------- ICE


class _StunServer(asyncio.DatagramProtocol):
    """Answers STUN binding requests with the sender's address, like a real STUN server."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        request = stun.parse_message(data)
        answer = stun.Message(message_method=stun.Method.BINDING,
                              message_class=stun.Class.RESPONSE,
                              transaction_id=request.transaction_id)
        answer.attributes["XOR-MAPPED-ADDRESS"] = (addr[0], addr[1])
        self.transport.sendto(bytes(answer), addr)


async def test_parse_ice_url() -> None:
    assert doctor.parse_ice_url("stun:127.0.0.1:19302") == doctor.IceUrl(
        "stun", "127.0.0.1", 19302, "udp")
    assert doctor.parse_ice_url("turn:turn.example.org?transport=tcp") == doctor.IceUrl(
        "turn", "turn.example.org", 3478, "tcp")
    assert doctor.parse_ice_url("turns:t.example.org").port == 5349
    with pytest.raises(ValueError):
        doctor.parse_ice_url("http://x")


async def test_stun_answered() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_StunServer,
                                                       local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        checks = await doctor.check_ice([IceServer(urls=[f"stun:127.0.0.1:{port}"])])
    finally:
        transport.close()
    assert [c.status for c in checks] == [Status.OK], checks
    assert "seen as 127.0.0.1:" in checks[0].detail


async def test_stun_silent_times_out() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                       local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        checks = await doctor.check_ice([IceServer(urls=[f"stun:127.0.0.1:{port}"])],
                                        timeout_s=0.3)
    finally:
        transport.close()
    assert checks[0].status is Status.WARN and "no STUN answer" in checks[0].detail


async def test_turn_is_reported_not_contacted_and_empty_list_contacts_nothing() -> None:
    checks = await doctor.check_ice([IceServer(urls=["turn:192.0.2.1:3478?transport=udp"],
                                               username="u", credential="c")])
    assert checks[0].status is Status.OK and "not contacted" in checks[0].detail
    assert "static credentials" in checks[0].detail
    empty = await doctor.check_ice([])
    assert [c.status for c in empty] == [Status.OK]


# --------------------------------------------------------------------------- the command


async def _run_cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_ANNOTATOR_")}
    env.pop("SHARED_STORAGE_ROOT", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtc_annotator", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_all_ok_json(tmp_path: Path, server: SignalingServer,
                               worker_token: str) -> None:
    db = tmp_path / "store.sqlite3"
    store = await Store.open(f"sqlite+aiosqlite:///{db}")
    await store.close()
    (tmp_path / "share").mkdir()
    cfg = tmp_path / "worker.toml"
    cfg.write_text(
        f'[signaling]\nurl = "{server.url}"\ntoken = "{worker_token}"\n'
        f'[worker]\npipelines = ["metadata", "scenes"]\ncache_dir = "{tmp_path / "cache"}"\n'
        f'job_slots = 1\n'
        f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n'
        f'[storage.share]\nbase_path = "{tmp_path / "share"}"\n')
    code, out, err = await _run_cli("doctor", "--config", str(cfg), "--json")
    report = json.loads(out)
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert code == 0, (out, err)
    assert report["exit_code"] == 0
    for name in ("config", "python", "package aiortc", "gpus", "storage share", "database",
                 "signaling", "ice", "pipeline scenes", "pipeline ocr"):
        assert statuses[name] == "ok", name


async def test_cli_failures_exit_1_with_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "worker.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "db.sqlite3"}"\n'
                   f'[storage.vast]\nbase_path = "{tmp_path / "not-mounted"}"\n')
    code, out, _ = await _run_cli("doctor", "--config", str(cfg))
    assert code == 1                      # a check failed; 2 means usage/config error
    assert "[FAIL] storage vast" in out
    assert "fix: mount the share" in out
    assert "[WARN] signaling" in out


async def test_cli_bad_config_is_a_failed_check(tmp_path: Path) -> None:
    cfg = tmp_path / "worker.toml"
    cfg.write_text("[worker]\njob_slot = 2\n")
    code, out, err = await _run_cli("doctor", "--config", str(cfg), "--json")
    assert code == 2
    report = json.loads(out)
    assert report["checks"][0]["name"] == "config"
    assert report["checks"][0]["status"] == "fail"
    assert "job_slots" in report["checks"][0]["fix"]
    assert "Traceback" not in err


async def test_worker_disk_counts_cached_files_and_outbox_entries(tmp_path: Path) -> None:
    import time

    from rtc_annotator.protocol import peer as proto
    from rtc_annotator.transport.filetransfer import FileCache
    from rtc_annotator.transport.outbox import Outbox

    cache_dir = tmp_path / "cache"
    cache = FileCache(cache_dir / "files", max_bytes=1 << 30, min_free_bytes=0)
    part = cache.partial_path("a" * 64)
    part.write_bytes(b"x" * 3000)
    box = Outbox(cache_dir / "outbox")
    for job in ("old-1", "new-1"):
        await box.append(job, [{"artifact_id": f"{job}-a"}])
    await box.finish("old-1", proto.JobDone(job_id="old-1", last_seq=1, transfer="shared"))
    old = time.time() - 10 * 86400
    for f in (cache_dir / "outbox" / "old-1").iterdir():
        os.utime(f, (old, old))
    os.utime(cache_dir / "outbox" / "old-1", (old, old))
    settings = Settings.model_validate({"worker": {
        "cache_dir": str(cache_dir), "cache_max_bytes": 2000, "outbox_expire_days": 7}})

    checks = {c.name: c for c in doctor.check_worker_disk(settings)}

    assert checks["worker file cache"].status is Status.WARN
    assert "3000 of 2000 bytes" in checks["worker file cache"].detail
    outbox = checks["worker outbox"]
    assert outbox.status is Status.WARN
    assert "2 job(s)" in outbox.detail and "1 older than" in outbox.detail
    assert "jobs attach" in outbox.fix
