"""Configuration: a TOML file read into pydantic models, with environment overrides.

Where the file comes from, first match wins: the ``--config`` argument, ``RTC_ANNOTATOR_CONFIG``,
``<user config dir>/rtc-annotator/config.toml`` if it exists, else built-in defaults.

Environment overrides: ``RTC_ANNOTATOR_<SECTION>_<KEY>`` (for example
``RTC_ANNOTATOR_WORKER_JOB_SLOTS=2``) replaces ``[section] key``. List values are given as JSON
(``["a","b"]``) or comma-separated (``a,b``). ``RTC_ANNOTATOR_DATABASE_URL`` sets the store URL.
Storage backends cannot be overridden one key at a time; ``SHARED_STORAGE_ROOT`` (legacy) makes a
backend named ``default`` when the file has no ``[storage.*]`` section.

Every problem becomes one :class:`~rtc_annotator.errors.ConfigError` that names the file, the
section, the key and how to fix it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rtc_annotator.errors import ConfigError, RtcAnnotatorError
from rtc_annotator.redact import register_secret
from rtc_annotator.storage import (
    StorageBackend,
    StorageConfig,
    legacy_storage_tables,
    split_wire_path,
)

APP_NAME = "rtc-annotator"
ENV_PREFIX = "RTC_ANNOTATOR_"
KNOWN_PIPELINES = ("metadata", "scenes", "transcript", "objects", "ocr")
MODEL_PROFILES = ("fast", "balanced", "high_quality")
MODEL_PIPELINES = ("transcript", "objects", "ocr")
ModelPipeline = Literal["transcript", "objects", "ocr"]
ModelProfile = Literal["fast", "balanced", "high_quality"]


def user_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def user_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def default_database_url() -> str:
    return f"sqlite+aiosqlite:///{user_data_dir() / 'store.sqlite3'}"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class SignalingSettings(_Section):
    """``[signaling]``: how clients and workers reach the signaling server."""

    url: str = Field(
        default="ws://127.0.0.1:8765/ws",
        description="Websocket URL of the signaling server (wss:// behind TLS).",
    )
    room: str | None = Field(default=None, description="Room (lab) to join.")
    token: str | None = Field(
        default=None,
        description="Token issued by the room admin (its role and room are signed in).",
    )
    heartbeat_s: float = Field(default=5.0, gt=0, description="Seconds between heartbeats.")
    reconnect_max_s: float = Field(
        default=30.0, gt=0, description="Upper bound of the reconnect backoff, in seconds."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not v.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return v


class WorkerSettings(_Section):
    """``[worker]``: a GPU worker agent."""

    name: str = Field(default_factory=socket.gethostname, description="Name shown to the room.")
    job_slots: int | None = Field(
        default=None, ge=1, le=64, description="Jobs run at once; default one per GPU (1 on CPU)."
    )
    pipelines: list[str] | None = Field(
        default=None, description="Pipelines to offer; default every pipeline this node can run."
    )
    models_dir: Path | None = Field(
        default=None, description="Directory holding model weights, filled by `models fetch`."
    )
    cache_dir: Path = Field(
        default_factory=lambda: user_cache_dir() / "worker",
        description="Where files received over the data channel are kept (content-addressed).",
    )
    max_upload_bytes: int = Field(
        default=50 * 1024**3, gt=0, description="Largest file accepted over the data channel."
    )
    cache_max_bytes: int = Field(
        default=100 * 1024**3, gt=0,
        description="Total size cap of received files (cache_dir/files): least recently used "
        "files are evicted to make room; files a running job uses never are.",
    )
    outbox_expire_days: float = Field(
        default=7.0, gt=0,
        description="Results of ended jobs that no client came back for are deleted after "
        "this many days.",
    )
    shutdown_grace_s: float = Field(
        default=60.0, ge=0, description="Grace period for running jobs after SIGTERM."
    )
    idle_exit_s: float = Field(
        default=0.0, ge=0,
        description="Exit 0 after this many seconds with no session and no job (0: never); "
        "`rtc-annotator pool` sets it for the workers it starts on demand.",
    )
    threads_per_job: int | None = Field(
        default=None, ge=1, le=256,
        description="CPU threads each job's model libraries use (OpenMP, torch, OpenCV); "
        "default: the libraries' own choice.",
    )
    max_open_transfers: int = Field(
        default=4, ge=1, description="File transfers one client link may have open at once "
        "(more are refused with TOO_MANY_TRANSFERS).",
    )
    max_queued_jobs_per_client: int = Field(
        default=32, ge=1, description="Unfinished jobs one client may have on this worker "
        "(more are refused with TOO_MANY_JOBS).",
    )

    @field_validator("pipelines")
    @classmethod
    def _check_pipelines(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        for name in v:
            if name not in KNOWN_PIPELINES:
                raise ValueError(
                    f"unknown pipeline {name!r}; known pipelines: {', '.join(KNOWN_PIPELINES)}"
                )
        return v


class ClientSettings(_Section):
    """``[client]``: defaults for `submit` and the local store."""

    pipelines: list[str] = Field(
        default_factory=lambda: ["metadata", "scenes"], description="Default pipelines for submit."
    )
    profile: Literal["fast", "balanced", "high_quality"] = Field(
        default="balanced", description="Default model profile."
    )
    transfer: Literal["auto", "shared", "rtc"] = Field(
        default="auto",
        description="auto: shared storage when the video is on a backend, else send it.",
    )
    spool_dir: Path = Field(
        default_factory=lambda: user_data_dir() / "spool",
        description="Where artifact batches wait when the database is unreachable.",
    )
    spool_wait_s: float = Field(
        default=10.0, ge=0,
        description="At the end of a job, how long submit waits for the database to take the "
        "spooled batches before leaving them for `rtc-annotator spool flush`.",
    )
    max_reroutes: int = Field(
        default=2, ge=0,
        description="How often a job whose worker died mid-job is routed to another worker.",
    )
    jobs_dir: Path | None = Field(
        default=None,
        description="Local job registry (one JSON file per job) used by `jobs` and --detach; "
        "default: the folder `jobs` next to spool_dir.",
    )

    def jobs_path(self) -> Path:
        """Where the job registry lives (``jobs_dir``, else ``<spool_dir>/../jobs``)."""
        return self.jobs_dir or self.spool_dir.parent / "jobs"

    @field_validator("pipelines")
    @classmethod
    def _check_pipelines(cls, v: list[str]) -> list[str]:
        return WorkerSettings._check_pipelines(v) or []


class DatabaseSettings(_Section):
    """``[database]``: the artifact store."""

    url: str = Field(
        default_factory=default_database_url,
        description="SQLAlchemy URL: sqlite+aiosqlite:///file or postgresql+asyncpg://...",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not v.startswith(
            ("sqlite+aiosqlite://", "postgresql+asyncpg://", "sqlite://", "postgresql://")
        ):
            raise ValueError("must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL")
        if v.startswith("sqlite://"):
            v = "sqlite+aiosqlite://" + v[len("sqlite://") :]
        elif v.startswith("postgresql://"):
            v = "postgresql+asyncpg://" + v[len("postgresql://") :]
        return v


class IceServer(_Section):
    """One STUN or TURN server."""

    urls: list[str] = Field(description="stun:host:port or turn:host:port?transport=udp URLs.")
    username: str | None = Field(default=None, description="TURN user name.")
    credential: str | None = Field(default=None, description="TURN password.")

    @field_validator("urls", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not url.startswith(("stun:", "turn:", "turns:")):
                raise ValueError(f"{url!r} is not a stun:, turn: or turns: URL")
        return v


class IceSettings(_Section):
    """``[ice]``: WebRTC connectivity."""

    servers: list[IceServer] = Field(
        default_factory=list,
        description="STUN/TURN servers. Empty by default: no public STUN server is contacted.",
    )
    host_addresses: list[str] = Field(
        default_factory=list,
        description="Restrict host candidates to these local addresses (e.g. 127.0.0.1).",
    )


class SignalingServerSettings(_Section):
    """``[signaling_server]``: the signaling server's own settings (``python -m signaling``).

    Each key has a command-line flag of the same name (``--turn-ttl-s`` is ``--turn-ttl``);
    a flag wins over ``RTC_ANNOTATOR_SIGNALING_SERVER_<KEY>``, which wins over the file. The
    secrets are never values here: ``$SIGNALING_ADMIN_SECRET`` / ``$SIGNALING_TURN_SECRET`` or
    the files named by ``admin_secret_file`` / ``turn_secret_file``."""

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8765, ge=0, le=65535, description="Port (0: any free port).")
    state: Path = Field(default=Path("signaling-state.sqlite3"),
                        description="SQLite file keeping rooms, policies and revocations.")
    admin_secret_file: Path | None = Field(
        default=None, description="File whose first line is the admin secret.")
    turn_secret_file: Path | None = Field(
        default=None, description="File whose first line is coturn's static-auth-secret.")
    cert: Path | None = Field(default=None, description="TLS certificate (PEM): serve wss://.")
    key: Path | None = Field(default=None, description="TLS private key (PEM).")
    stun: list[str] = Field(default_factory=list, description="stun: URLs handed to peers.")
    turn: list[str] = Field(default_factory=list,
                            description="turn: URLs handed out with short-lived credentials.")
    turn_ttl_s: int = Field(default=3600, gt=0, description="TURN credential lifetime, s.")
    heartbeat_s: float = Field(default=5.0, gt=0, description="Heartbeat interval, s.")
    gone_after_s: float = Field(default=12.0, gt=0,
                                description="Close a peer silent this long, s.")
    rate_per_s: float = Field(default=50.0, gt=0, description="Frames/s per connection.")
    rate_burst: float = Field(default=200.0, gt=0, description="Rate-limit burst, frames.")


class StorageSettings(_Section):
    """``[storage.<name>]``: one shared filesystem as mounted on this machine."""

    base_path: Path = Field(description="Absolute mount point on this machine.")
    type: str = Field(default="local", description="nfs, vast, lustre, local, ...")
    description: str = Field(default="", description="Shown in listings.")
    user_subdir: str = Field(default="", description="Default user_subdir for submit.")

    @field_validator("base_path")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        v = v.expanduser()
        if not v.is_absolute():
            raise ValueError("must be an absolute path")
        return v

    @field_validator("user_subdir")
    @classmethod
    def _subdir(cls, v: str) -> str:
        try:
            split_wire_path(v, what="user_subdir", allow_empty=True)
        except RtcAnnotatorError as exc:
            raise ValueError(exc.message) from None
        return v


class ClusterSettings(_Section):
    """``[cluster]``: resources of the SLURM / Run:AI job that runs this worker
    (``worker --render``; flags of the same names override them)."""

    gpus: int | None = Field(
        default=None, ge=0, le=64,
        description="GPUs per job; 0 for a CPU-only worker (no --gres); default one per job slot.",
    )
    cpus: int = Field(default=4, ge=1, le=1024, description="CPUs per job (--cpus-per-task).")
    mem: str | None = Field(
        default=None, pattern=r"^[0-9]+[KMGT]?$",
        description="Memory per job, e.g. 32G (--mem); default: the partition's default.",
    )
    time_limit: str = Field(
        default="24:00:00", pattern=r"^[0-9][0-9:-]*$",
        description="Wall-time limit (--time), e.g. 24:00:00 or 2-00:00:00.",
    )
    partition: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._,-]+$",
                                  description="SLURM partition (--partition).")
    account: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$",
                                description="SLURM account (--account).")
    qos: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$",
                            description="SLURM quality of service (--qos).")
    sbatch_lines: list[str] = Field(
        default_factory=list,
        description="Extra #SBATCH options, one per item, e.g. \"--constraint=a100\".",
    )
    log_dir: Path | None = Field(
        default=None,
        description="Directory (on the cluster) for the job logs; default: sbatch's working "
        "directory.",
    )

    @field_validator("sbatch_lines")
    @classmethod
    def _check_lines(cls, v: list[str]) -> list[str]:
        for line in v:
            if not re.fullmatch(r"--?[A-Za-z][A-Za-z0-9-]*(=[\x21-\x7e]+)?", line):
                raise ValueError(f"{line!r} is not one sbatch option like \"--constraint=a100\" "
                                 "(no spaces or control characters)")
        return v


class PoolSettings(_Section):
    """``[pool]``: `rtc-annotator pool`, SLURM workers that follow the room's queue."""

    templates: list[Path] = Field(
        default_factory=list,
        description="Worker config files (on the cluster's shared filesystem) the pool starts "
        "workers from; the first that can take a queued request is used.",
    )
    min_workers: int = Field(default=0, ge=0, le=10_000, description="Workers kept running.")
    max_workers: int = Field(default=4, ge=0, le=10_000, description="Never more jobs than this.")
    idle_exit_s: float = Field(
        default=300.0, gt=0,
        description="Workers started for queued requests exit after this long without work.",
    )
    poll_s: float = Field(default=10.0, gt=0, description="Seconds between two looks.")
    state_dir: Path = Field(
        default_factory=lambda: user_data_dir() / "pool",
        description="Rendered job scripts and status.json (`pool status`).",
    )
class ModelSettings(_Section):
    """``[models.<pipeline>.<name>]``: one model this machine holds."""

    path: Path = Field(
        description="File (objects: .pt/.onnx) or folder (transcript: CTranslate2 whisper; ocr: "
        "easyocr .pth files); a relative path is under [worker] models_dir."
    )
    recognizer: str | None = Field(
        default=None, description="ocr: easyocr recognizer name (default english_g2)."
    )
    detector: Literal["craft", "dbnet18"] | None = Field(
        default=None, description="ocr: easyocr text detector (default craft)."
    )
    languages: list[str] | None = Field(
        default=None, description="ocr: languages the recognizer reads (default [\"en\"])."
    )

    @field_validator("path")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

class TrustSettings(_Section):
    """``[trust]``: peer keys, proven over each connection (see docs/security.md)."""

    key_path: Path | None = Field(
        default=None, description="This node's Ed25519 key (created on first use, mode 0600); "
        "default identity.key next to the config file.",
    )
    vouch_path: Path | None = Field(
        default=None, description="The room admin's vouch for this worker's key; default the "
        "key path with .vouch.",
    )
    admin_public_keys: list[str] = Field(
        default_factory=list, description="Room admin keys (ed25519:...) whose vouches a client "
        "accepts.",
    )
    require_vouched: bool = Field(
        default=False, description="Clients refuse a worker whose key no admin key vouches for.",
    )
    client_key: bool = Field(
        default=False, description="Clients also prove a key of their own (jobs then belong to "
        "that key).",
    )


class Settings(_Section):
    """The whole configuration."""

    signaling: SignalingSettings = Field(default_factory=SignalingSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    client: ClientSettings = Field(default_factory=ClientSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    ice: IceSettings = Field(default_factory=IceSettings)
    storage: dict[str, StorageSettings] = Field(default_factory=dict)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    pool: PoolSettings = Field(default_factory=PoolSettings)
    signaling_server: SignalingServerSettings = Field(default_factory=SignalingServerSettings)
    models: dict[ModelPipeline, dict[str, ModelSettings]] = Field(
        default_factory=dict,
        description="[models.<pipeline>.<name>]: models this machine holds, by name.",
    )
    profiles: dict[ModelProfile, dict[ModelPipeline, str]] = Field(
        default_factory=dict,
        description="[profiles.<profile>] <pipeline> = <model name>: the model each profile "
        "uses (default: the built-in table).",
    )
    trust: TrustSettings = Field(default_factory=TrustSettings)

    source: Path | None = Field(default=None, exclude=True, description="File it was read from.")

    def storage_config(self) -> StorageConfig:
        return StorageConfig.of(
            StorageBackend(
                name=name,
                base_path=s.base_path,
                type=s.type,
                description=s.description,
                user_subdir=s.user_subdir,
            )
            for name, s in self.storage.items()
        )


_SECTIONS: dict[str, type[_Section]] = {
    "signaling": SignalingSettings,
    "worker": WorkerSettings,
    "client": ClientSettings,
    "database": DatabaseSettings,
    "ice": IceSettings,
    "cluster": ClusterSettings,
    "pool": PoolSettings,
    "signaling_server": SignalingServerSettings,
    "trust": TrustSettings,
}


# --------------------------------------------------------------------------- loading


def find_config_file(
    explicit: str | os.PathLike[str] | None, env: Mapping[str, str]
) -> Path | None:
    if explicit is not None:
        return Path(explicit)
    if env.get("RTC_ANNOTATOR_CONFIG"):
        return Path(env["RTC_ANNOTATOR_CONFIG"])
    default = default_config_path()
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found",
            hint="check the path, or copy config.example.toml there",
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(
            f"{path}: cannot read config file (permission denied)", hint="fix its permissions"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply",
                          hint="a configuration file needs only a few levels") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid TOML: {exc}",
            hint="fix the syntax at that line (strings need quotes, tables are [section])",
        ) from None


def _split_list(raw: str) -> list[Any]:
    raw = raw.strip()
    if raw.startswith("["):
        value = json.loads(raw)
        if not isinstance(value, list):
            raise ValueError("not a list")
        return value
    return [item.strip() for item in raw.split(",") if item.strip()]


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Fold ``RTC_ANNOTATOR_<SECTION>_<KEY>`` variables into ``data``; return the names used."""
    used: list[str] = []
    for var, raw in sorted(env.items()):
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        for name in _SECTIONS:  # a two-word section: RTC_ANNOTATOR_SIGNALING_SERVER_PORT
            if "_" in name and rest.startswith(name + "_"):
                section, key = name, rest[len(name) + 1 :]
        model = _SECTIONS.get(section)
        if model is None or not key:
            continue  # RTC_ANNOTATOR_CONFIG, RTC_ANNOTATOR_TEST_*, ... are not overrides
        field = model.model_fields.get(key)
        if field is None:
            raise ConfigError(
                f"environment variable {var}: [{section}] has no key {key!r}",
                hint=_did_you_mean(key, list(model.model_fields), section),
            )
        value: Any = raw
        annotation = str(field.annotation)
        if "list" in annotation:
            try:
                value = _split_list(raw)
            except ValueError:
                raise ConfigError(
                    f"environment variable {var}: cannot read {raw!r} as a list",
                    hint='give JSON (["a","b"]) or comma-separated values (a,b)',
                ) from None
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            data[section] = {}
        data[section][key] = value
        used.append(var)
    return used


def _did_you_mean(key: str, known: list[str], section: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    listing = ", ".join(known)
    if close:
        return f"did you mean {close[0]!r}? keys of [{section}]: {listing}"
    return f"keys of [{section}]: {listing}"


def _location(loc: tuple[int | str, ...]) -> tuple[str, str]:
    """Turn a pydantic error location into ('[section]', 'key')."""
    parts = [str(p) for p in loc]
    if not parts:
        return "(top level)", ""
    if parts[0] == "storage" and len(parts) >= 2:
        section = f"[storage.{parts[1]}]"
        key = ".".join(parts[2:])
    elif parts[0] in ("models", "profiles") and len(parts) >= 2:
        cut = 3 if parts[0] == "models" else 2
        section = "[" + ".".join(parts[:cut]) + "]"
        key = ".".join(parts[cut:])
    elif parts[0] in _SECTIONS:
        section = f"[{parts[0]}]"
        key = ".".join(parts[1:])
    else:
        section, key = "(top level)", ".".join(parts)
    return section, key


def _hint_for(err: Mapping[str, Any], section: str, key: str) -> str:
    kind = err.get("type", "")
    loc = [str(p) for p in err.get("loc", ())]
    if kind == "extra_forbidden":
        name = loc[-1] if loc else key
        if section == "(top level)":
            return _did_you_mean(name, [*_SECTIONS, "storage", "models", "profiles"],
                                 "top level").replace(
                "keys of [top level]", "known sections"
            )
        if section.startswith("[storage."):
            return _did_you_mean(name, list(StorageSettings.model_fields), section.strip("[]"))
        if section.startswith("[models."):
            return _did_you_mean(name, list(ModelSettings.model_fields), section.strip("[]"))
        section_model = _SECTIONS.get(section.strip("[]"))
        if section_model is not None:
            return _did_you_mean(name, list(section_model.model_fields), section.strip("[]"))
        return "remove it"
    if kind == "missing":
        if section.startswith("[storage.") and key == "base_path":
            return f'add base_path = "/absolute/mount/point" to {section}'
        return f"add {key} to {section}"
    field_doc = ""
    model: type[BaseModel] | None = _SECTIONS.get(section.strip("[]"))
    if section.startswith("[storage."):
        model = StorageSettings
    if model is not None and key in model.model_fields:
        field_doc = model.model_fields[key].description or ""
    if field_doc:
        return f"set {key} to a valid value ({field_doc.rstrip('.')})"
    return "see config.example.toml for valid values"


def _one_line(text: str) -> str:
    """Escape control characters (a quoted TOML key may hold a newline): errors stay one line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


MAX_REPORTED_ERRORS = 10
"""A hostile or broken file with thousands of bad keys is reported by its first few."""


def _format_validation(exc: ValidationError, source: str) -> ConfigError:
    """One message for all problems: ``file: [section] key: problem (fix: ...)``."""
    lines: list[str] = []
    hints: list[str] = []
    errors = exc.errors()
    for err in errors[:MAX_REPORTED_ERRORS]:
        section, key = _location(tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" if section != "(top level)" else "unknown section"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        where = f"{section} {key}".strip() if key else section
        hint = _hint_for(err, section, key)
        lines.append(f"{where}: {msg}")
        hints.append(f"{where}: {hint}" if len(errors) > 1 else hint)
    if len(errors) > MAX_REPORTED_ERRORS:
        lines.append(f"... and {len(errors) - MAX_REPORTED_ERRORS} more problem(s)")
    return ConfigError(_one_line(f"{source}: " + "; ".join(lines)),
                       hint=_one_line("; ".join(hints)))


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    use_default_file: bool = True,
) -> Settings:
    """Read, override and validate the configuration; raise :class:`ConfigError` on any problem."""
    environ = os.environ if env is None else env
    file = find_config_file(path, environ) if (path is not None or use_default_file) else None
    data: dict[str, Any] = _read_toml(file) if file is not None else {}
    source = str(file) if file is not None else "<defaults>"
    if "storage" in data and not isinstance(data["storage"], dict):
        raise ConfigError(
            f"{source}: storage must be tables like [storage.<name>]",
            hint='write [storage.vast] then base_path = "/mnt/vast"',
        )
    used = _apply_env(data, environ)
    if used:
        source = f"{source} (with {', '.join(used)})"
    if not data.get("storage"):
        legacy = legacy_storage_tables(environ)
        if legacy:
            data["storage"] = legacy
            source = f"{source} (storage from SHARED_STORAGE_ROOT)"
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise _format_validation(exc, source) from None
    for name in settings.storage:
        try:
            StorageBackend(name=name, base_path=settings.storage[name].base_path)
        except RtcAnnotatorError as exc:
            raise ConfigError(_one_line(f"{source}: [storage.{name}]: {exc.message}"),
                              hint=exc.hint) from None
    settings.source = file
    for secret in (settings.signaling.token, *(s.credential for s in settings.ice.servers)):
        register_secret(secret)  # never shown in a log line or an error message
    return settings
