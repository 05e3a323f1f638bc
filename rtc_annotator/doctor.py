"""`rtc-annotator doctor`: check that this machine and its configuration can do their job.

Every check returns a :class:`Check` ``{name, status, detail, fix}`` with status ``ok``, ``warn``
or ``fail``; :func:`exit_code` folds a list of them into 0 (no failure; warnings allowed) or 1
(a check failed), the exit codes every command uses. Checks that only look at values
(:func:`check_python`, :func:`check_packages`,
:func:`check_gpus`, :func:`check_pipelines`) are plain functions over their inputs; checks that
must touch the outside (storage, database, signaling, ICE) take what they need as arguments
and a timeout, and never contact anything that is not configured: with the default (empty)
``[ice] servers`` no STUN server is contacted, and without ``[signaling] token`` the signaling
server is not contacted either.

:func:`run_checks` runs them all for a :class:`~rtc_annotator.config.Settings`. An unexpected
exception inside a check becomes a ``fail`` of that check, never a traceback.
"""

from __future__ import annotations

import asyncio
import enum
import importlib.metadata
import os
import platform
import socket
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rtc_annotator.config import IceServer, Settings, SignalingSettings
from rtc_annotator.logs import get_logger

log = get_logger(__name__)


class Status(enum.StrEnum):
    """Outcome of one check."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    """What was checked, e.g. ``storage vast`` or ``database``."""
    status: Status
    """ok, warn or fail."""
    detail: str
    """What was found."""
    fix: str = ""
    """How to fix it (empty when ok)."""

    def to_dict(self) -> dict[str, str]:
        d = asdict(self)
        d["status"] = str(self.status)
        return d


def exit_code(checks: Iterable[Check]) -> int:
    """0 when no check failed (warnings allowed), 1 when one did: the documented exit codes of
    every command (2 stays for usage and configuration errors)."""
    return 1 if any(c.status is Status.FAIL for c in checks) else 0


# --------------------------------------------------------------------------- versions

REQUIRED_PACKAGES = ("aiortc", "aioice", "websockets", "aiohttp", "sqlalchemy", "alembic")
"""Distributions the project cannot work without: absent is a failure."""

OPTIONAL_PACKAGES = {
    "faster-whisper": "transcribe",
    "ultralytics": "detect",
    "easyocr": "ocr",
    "torch": "gpu",
}
"""Distributions of the heavy pipelines, and the extra that installs each: absent is fine."""

INSTALL_HINT = "pip install -c constraints.txt -e '.[{extra}]'"


def check_python(version: tuple[int, int, int] | None = None,
                 implementation: str | None = None) -> Check:
    """The interpreter: 3.11 or newer."""
    v = version or (sys.version_info[0], sys.version_info[1], sys.version_info[2])
    impl = implementation or platform.python_implementation()
    detail = f"{impl} {v[0]}.{v[1]}.{v[2]} ({sys.executable})"
    if (v[0], v[1]) < (3, 11):
        return Check("python", Status.FAIL, detail, "use Python 3.11 or newer")
    return Check("python", Status.OK, detail)


def package_version(dist: str) -> str | None:
    """Installed version of the distribution ``dist``, or None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_packages(
    versions: Callable[[str], str | None] = package_version,
) -> list[Check]:
    """One check per package: required ones must be present; optional ones are reported."""
    out: list[Check] = []
    for dist in REQUIRED_PACKAGES:
        v = versions(dist)
        if v is None:
            out.append(Check(f"package {dist}", Status.FAIL, "not installed",
                             "reinstall the project: pip install -c constraints.txt -e ."))
        else:
            out.append(Check(f"package {dist}", Status.OK, v))
    for dist, extra in OPTIONAL_PACKAGES.items():
        v = versions(dist)
        if v is None:
            out.append(Check(f"package {dist}", Status.OK,
                             f"absent (optional, extra '{extra}')"))
        else:
            out.append(Check(f"package {dist}", Status.OK, v))
    return out


# --------------------------------------------------------------------------- GPUs


@dataclass(frozen=True)
class GpuView:
    """What the two GPU sources report (None: that source is not available here)."""

    torch: Sequence[tuple[str, int]] | None
    """(name, memory MiB) per GPU as torch sees them; None without torch."""
    nvidia_smi: Sequence[tuple[str, int]] | None
    """(name, memory MiB) per GPU as nvidia-smi lists them; None without nvidia-smi."""


def check_gpus(view: GpuView, job_slots: int | None = None) -> Check:
    """GPUs seen; a warning when nvidia-smi sees GPUs that torch cannot use, or when more job
    slots are configured than there are GPUs."""
    seen = view.torch if view.torch else (view.nvidia_smi or [])
    listing = ", ".join(f"{name} ({mem} MiB)" for name, mem in seen)
    if view.nvidia_smi and view.torch is not None and not view.torch:
        return Check(
            "gpus", Status.WARN,
            f"nvidia-smi lists {len(view.nvidia_smi)} GPU(s) but torch sees none",
            "install a CUDA build of torch (pip install torch --index-url "
            "https://download.pytorch.org/whl/cu124) or check CUDA_VISIBLE_DEVICES",
        )
    if not seen:
        return Check("gpus", Status.OK, "none: CPU only (workers run pipelines on the CPU)")
    if job_slots is not None and job_slots > len(seen):
        return Check(
            "gpus", Status.WARN,
            f"{len(seen)} GPU(s): {listing}; [worker] job_slots = {job_slots} shares them",
            "set [worker] job_slots to the number of GPUs unless the models fit together",
        )
    return Check("gpus", Status.OK, f"{len(seen)} GPU(s): {listing}")


def gather_gpus() -> GpuView:
    """Ask torch and nvidia-smi (each may be absent) which GPUs this machine has."""
    from rtc_annotator.pipelines import gpu

    def pairs(found: list[gpu.GpuInfo] | None) -> list[tuple[str, int]] | None:
        return None if found is None else [(g.name, g.memory_mb) for g in found]

    return GpuView(torch=pairs(gpu._from_torch()), nvidia_smi=pairs(gpu._from_nvidia_smi()))


# --------------------------------------------------------------------------- storage


def check_storage_backend(name: str, base_path: Path) -> Check:
    """A backend's base path exists and is a readable directory; writable or not is a note."""
    label = f"storage {name}"
    if not base_path.exists():
        return Check(label, Status.FAIL, f"{base_path} does not exist",
                     f"mount the share at {base_path} or fix [storage.{name}] base_path")
    if not base_path.is_dir():
        return Check(label, Status.FAIL, f"{base_path} is not a directory",
                     f"point [storage.{name}] base_path at the mount point")
    try:
        with os.scandir(base_path) as it:
            next(it, None)
    except OSError as exc:
        return Check(label, Status.FAIL, f"{base_path} cannot be read ({exc.strerror})",
                     "give this user read access to the share (or fix the mount)")
    if not os.access(base_path, os.W_OK):
        return Check(label, Status.WARN, f"{base_path} is readable but not writable",
                     "fine for reading videos in place; make it writable if jobs should "
                     "write next to the videos")
    return Check(label, Status.OK, f"{base_path} readable and writable")


def check_storage(settings: Settings) -> list[Check]:
    """Every ``[storage.<name>]`` backend; a note when none is configured."""
    if not settings.storage:
        return [Check("storage", Status.OK,
                      "no [storage.*] backends: videos are sent over the data channel")]
    return [check_storage_backend(n, s.base_path) for n, s in settings.storage.items()]


def check_worker_dirs(settings: Settings) -> list[Check]:
    """``[worker] cache_dir`` can be created/written; ``models_dir``, when set, exists."""
    out: list[Check] = []
    cache = settings.worker.cache_dir
    probe = cache
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.is_dir() and os.access(probe, os.W_OK):
        out.append(Check("worker cache_dir", Status.OK,
                         f"{cache} {'writable' if probe == cache else 'can be created'}"))
    else:
        out.append(Check("worker cache_dir", Status.WARN, f"{cache} cannot be written",
                         "set [worker] cache_dir to a writable directory (scratch space)"))
    models = settings.worker.models_dir
    if models is None:
        out.append(Check("worker models_dir", Status.OK,
                         "not set: only pipelines without weights can run here"))
    elif not models.is_dir():
        out.append(Check("worker models_dir", Status.FAIL, f"{models} is not a directory",
                         "fill it on a login node: rtc-annotator models fetch --to "
                         f"{models}"))
    else:
        out.append(Check("worker models_dir", Status.OK, str(models)))
    out += check_worker_disk(settings)
    return out


def check_worker_disk(settings: Settings, *, now: float | None = None) -> list[Check]:
    """What the worker keeps on disk: received files against ``cache_max_bytes``, and outbox
    entries (results no client has fetched yet), with those past ``outbox_expire_days`` that
    the worker deletes at its next start or hourly pass."""
    import time

    from rtc_annotator.transport.filetransfer import cache_entries
    from rtc_annotator.transport.outbox import outbox_entries

    w = settings.worker
    files_root, outbox_root = w.cache_dir / "files", w.cache_dir / "outbox"
    out: list[Check] = []
    if files_root.is_dir():
        used = sum(e.size for e in cache_entries(files_root))
        status = Status.OK if used <= w.cache_max_bytes else Status.WARN
        out.append(Check("worker file cache", status,
                         f"{used} of {w.cache_max_bytes} bytes (cache_max_bytes) used",
                         "" if status is Status.OK else "the worker evicts unused files at the "
                         "next transfer; lower nothing, or raise cache_max_bytes"))
    if outbox_root.is_dir():
        entries = outbox_entries(outbox_root)
        max_age = w.outbox_expire_days * 86400
        stamp = time.time() if now is None else now
        old = [e for e in entries if stamp - e.last_change > max_age]
        detail = (f"{len(entries)} job(s) with results waiting for their client, "
                  f"{sum(e.batches for e in entries)} batch(es); {len(old)} older than "
                  f"outbox_expire_days ({w.outbox_expire_days:g})")
        out.append(Check("worker outbox", Status.OK if not old else Status.WARN, detail,
                         "" if not old else "the worker deletes them at its next start (or "
                         "within the hour): attach to them first if they are still wanted "
                         "(rtc-annotator jobs attach JOB_ID)"))
    return out


# --------------------------------------------------------------------------- database


def redact_url(url: str) -> str:
    """The database URL with its password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unreadable url>"


async def check_database(url: str, *, timeout_s: float = 5.0) -> Check:
    """The store answers and is migrated to the newest revision. Never migrates, never creates
    a SQLite file that does not exist yet."""
    from sqlalchemy.engine import make_url

    from rtc_annotator.store import migrate
    from rtc_annotator.store.repository import Store

    shown = redact_url(url)
    try:
        parsed = make_url(url)
    except Exception:
        return Check("database", Status.FAIL, f"cannot read the database URL {shown}",
                     "set [database] url to sqlite+aiosqlite:///FILE or postgresql+asyncpg://...")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db_file = Path(str(parsed.database))
        if not await asyncio.to_thread(db_file.exists):
            return Check("database", Status.WARN, f"{db_file} does not exist yet",
                         "it is created on first use, or now with `rtc-annotator db upgrade`")
    head = migrate.head_revision()
    store: Store | None = None
    try:
        async with asyncio.timeout(timeout_s):
            store = await Store.open(url, upgrade=False)
            async with store.engine.connect() as conn:
                current = await conn.run_sync(migrate.current_revision)
    except TimeoutError:
        return Check("database", Status.FAIL, f"{shown}: no answer within {timeout_s:g} s",
                     "check that the database server runs and [database] url host/port")
    except Exception as exc:
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        return Check("database", Status.FAIL, f"{shown}: {str(message).splitlines()[0]}",
                     "check [database] url (host, port, user, password, database name)")
    finally:
        if store is not None:
            await store.close()
    if current is None:
        return Check("database", Status.WARN, f"{shown}: reachable, no schema yet",
                     "run `rtc-annotator db upgrade` (or let the first command create it)")
    if current != head:
        return Check("database", Status.WARN,
                     f"{shown}: at revision {current}, newest is {head}",
                     "run `rtc-annotator db upgrade`")
    return Check("database", Status.OK, f"{shown}: reachable, revision {current} (newest)")


# --------------------------------------------------------------------------- signaling


async def check_signaling(settings: SignalingSettings, *, timeout_s: float = 5.0) -> Check:
    """Connect to ``[signaling] url`` and say hello with the token (skipped without one)."""
    from rtc_annotator.protocol.signaling import SignalingError
    from rtc_annotator.signaling_client import SignalingClient

    if not settings.token:
        return Check("signaling", Status.WARN, f"{settings.url}: not contacted, no token set",
                     "set [signaling] token (ask the room admin: rtc-annotator room token)")
    client = SignalingClient(settings.url, token=settings.token, reconnect=False,
                             connect_timeout_s=timeout_s, request_timeout_s=timeout_s,
                             heartbeat_s=settings.heartbeat_s)
    try:
        welcome = await client.connect()
    except SignalingError as exc:
        return Check("signaling", Status.FAIL, f"{settings.url}: {exc.code}: {exc.message}",
                     exc.hint or "check [signaling] url and token")
    except Exception as exc:
        return Check("signaling", Status.FAIL, f"{settings.url}: {type(exc).__name__}: {exc}",
                     "check [signaling] url and that the server runs")
    finally:
        await client.close()
    detail = (f"{settings.url}: hello ok as {welcome.get('role')} in room "
              f"{welcome.get('room')!r} (protocol {welcome.get('protocol')})")
    if settings.room and welcome.get("room") != settings.room:
        return Check("signaling", Status.WARN,
                     f"{detail}, but [signaling] room is {settings.room!r}",
                     "the token decides the room: fix [signaling] room or get a token for it")
    return Check("signaling", Status.OK, detail)


# --------------------------------------------------------------------------- ICE


@dataclass(frozen=True)
class IceUrl:
    """A parsed stun:/turn:/turns: URL."""

    scheme: str
    """stun, turn or turns."""
    host: str
    """Host name or address."""
    port: int
    """UDP/TCP port (3478 by default, 5349 for turns)."""
    transport: str
    """udp or tcp."""


def parse_ice_url(url: str) -> IceUrl:
    """Parse ``stun:host[:port]`` / ``turn:host[:port][?transport=udp|tcp]``."""
    scheme, _, rest = url.partition(":")
    rest, _, query = rest.partition("?")
    rest = rest.lstrip("/")
    parts = urlsplit(f"//{rest}")
    if scheme not in ("stun", "stuns", "turn", "turns") or not parts.hostname:
        raise ValueError(f"not a stun:/turn: URL: {url!r}")
    transport = "udp"
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if key == "transport" and value:
            transport = value.lower()
    default_port = 5349 if scheme in ("turns", "stuns") else 3478
    return IceUrl(scheme, parts.hostname, parts.port or default_port, transport)


class _StunClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.answers.put_nowait(data)


async def stun_binding(host: str, port: int, *, timeout_s: float = 2.0) -> tuple[str, int]:
    """Send one STUN binding request over UDP; return the mapped (address, port).

    Raises TimeoutError when nothing answers, OSError when the host cannot be resolved or the
    port is refused, ValueError for a malformed answer."""
    from aioice import stun

    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        addr = (str(infos[0][4][0]), int(infos[0][4][1]))
        transport, proto = await loop.create_datagram_endpoint(_StunClient, remote_addr=addr)
        try:
            request = stun.Message(message_method=stun.Method.BINDING,
                                   message_class=stun.Class.REQUEST)
            transport.sendto(bytes(request))
            while True:
                data = await proto.answers.get()
                try:
                    answer = stun.parse_message(data)
                except ValueError:
                    continue
                if answer.transaction_id != request.transaction_id:
                    continue
                if answer.message_class != stun.Class.RESPONSE:
                    raise ValueError(f"STUN error answer: {answer.attributes.get('ERROR-CODE')}")
                mapped = (answer.attributes.get("XOR-MAPPED-ADDRESS")
                          or answer.attributes.get("MAPPED-ADDRESS"))
                if not mapped:
                    raise ValueError("STUN answer without a mapped address")
                return str(mapped[0]), int(mapped[1])
        finally:
            transport.close()


async def check_ice_server(server: IceServer, *, timeout_s: float = 2.0) -> list[Check]:
    """STUN URLs: one binding request each; TURN URLs: reported, not contacted."""
    out: list[Check] = []
    for url in server.urls:
        label = f"ice {url}"
        try:
            parsed = parse_ice_url(url)
        except ValueError as exc:
            out.append(Check(label, Status.FAIL, str(exc), "fix the URL in [[ice.servers]] urls"))
            continue
        if parsed.scheme in ("turn", "turns"):
            if server.username and server.credential:
                creds = "static credentials set"
            else:
                creds = "credentials come from the signaling server"
            out.append(Check(label, Status.OK, f"configured, not contacted ({creds})"))
            continue
        if parsed.scheme == "stuns" or parsed.transport != "udp":
            out.append(Check(label, Status.OK, "configured, not contacted (not STUN over UDP)"))
            continue
        try:
            mapped = await stun_binding(parsed.host, parsed.port, timeout_s=timeout_s)
        except TimeoutError:
            out.append(Check(label, Status.WARN, f"no STUN answer within {timeout_s:g} s",
                             "check the host/port and that UDP to it is allowed; peers on "
                             "one network still connect with host candidates"))
        except (OSError, ValueError) as exc:
            out.append(Check(label, Status.WARN, f"STUN request failed: {exc}",
                             "check the host name and port in [[ice.servers]]"))
        else:
            out.append(Check(label, Status.OK,
                             f"STUN answered; this machine is seen as {mapped[0]}:{mapped[1]}"))
    return out


async def check_ice(servers: Sequence[IceServer], *, timeout_s: float = 2.0) -> list[Check]:
    """Every configured ICE server; none configured is fine (nothing is contacted)."""
    if not servers:
        return [Check("ice", Status.OK, "no [[ice.servers]]: host candidates only, plus what "
                                        "the signaling server hands out")]
    results = await asyncio.gather(*(check_ice_server(s, timeout_s=timeout_s) for s in servers))
    return [c for group in results for c in group]


# --------------------------------------------------------------------------- pipelines


def pipeline_fix(name: str, reason: str) -> str:
    """A fix hint for an unavailable pipeline, from the probe's reason."""
    from rtc_annotator.pipelines.profiles import PIPELINE_EXTRAS

    if "cannot import" in reason or "No module" in reason:
        extra = PIPELINE_EXTRAS.get(name, "")
        return INSTALL_HINT.format(extra=extra) if extra else "install the missing package"
    if "models_dir" in reason or "weights" in reason or "missing" in reason:
        return ("on a login node with internet: rtc-annotator models fetch --to DIR "
                "--pipelines " + name + "; then set [worker] models_dir = DIR")
    if "GPU" in reason:
        return "use a node with a larger GPU, or a smaller model profile"
    return "see `rtc-annotator pipelines list`"


def check_pipelines(rows: Iterable[Any]) -> list[Check]:
    """One check per :class:`~rtc_annotator.pipelines.registry.PipelineStatus`."""
    out: list[Check] = []
    for row in rows:
        label = f"pipeline {row.name}"
        if row.ok:
            profiles = ", ".join(row.profiles)
            detail = f"available (profiles: {profiles})" + (f"; {row.reason}" if row.reason
                                                              else "")
            out.append(Check(label, Status.OK, detail))
        elif row.reason.startswith("not offered"):
            out.append(Check(label, Status.OK, row.reason))
        else:
            out.append(Check(label, Status.WARN, row.reason, pipeline_fix(row.name, row.reason)))
    return out


# --------------------------------------------------------------------------- all


async def _guard(name: str, make: Callable[[], Awaitable[list[Check]]]) -> list[Check]:
    try:
        return await make()
    except Exception as exc:
        log.warning("doctor check crashed", ctx={"check": name, "error": type(exc).__name__})
        return [Check(name, Status.FAIL, f"check crashed: {type(exc).__name__}: {exc}",
                      "report this as a bug with the output of --log-level DEBUG")]


async def run_checks(settings: Settings, *, timeout_s: float = 5.0,
                     registry: Any | None = None) -> list[Check]:
    """Run every check for ``settings``; the network checks run concurrently."""

    async def config() -> list[Check]:
        source = str(settings.source) if settings.source else "built-in defaults (no file)"
        return [Check("config", Status.OK, source)]

    async def local() -> list[Check]:
        def sync() -> list[Check]:
            return [check_python(), *check_packages(),
                    check_gpus(gather_gpus(), settings.worker.job_slots),
                    *check_storage(settings), *check_worker_dirs(settings)]
        return await asyncio.to_thread(sync)

    async def database() -> list[Check]:
        return [await check_database(settings.database.url, timeout_s=timeout_s)]

    async def signaling() -> list[Check]:
        return [await check_signaling(settings.signaling, timeout_s=timeout_s)]

    async def ice() -> list[Check]:
        return await check_ice(settings.ice.servers, timeout_s=min(timeout_s, 2.0))

    async def pipelines() -> list[Check]:
        from rtc_annotator.pipelines.registry import DEFAULT_REGISTRY

        reg = registry or DEFAULT_REGISTRY
        return check_pipelines(await asyncio.to_thread(reg.statuses, settings))

    parts = await asyncio.gather(
        _guard("config", config), _guard("local", local), _guard("database", database),
        _guard("signaling", signaling), _guard("ice", ice), _guard("pipelines", pipelines),
    )
    return [c for group in parts for c in group]
