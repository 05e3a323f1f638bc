"""Configuration loading, environment overrides, legacy SHARED_STORAGE_ROOT, and error texts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rtc_annotator.config import Settings, load_settings
from rtc_annotator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "worker.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path | None, **env: str) -> Settings:
    return load_settings(path, env=env, use_default_file=False)


def test_defaults_without_file() -> None:
    s = load(None)
    assert s.signaling.url.startswith("ws://127.0.0.1")
    assert s.ice.servers == [] and s.ice.host_addresses == []
    assert s.database.url.startswith("sqlite+aiosqlite:///")
    assert s.storage == {}
    assert s.source is None


def test_full_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
[signaling]
url = "wss://signal.example.org/ws"
room = "lab"
token = "t0k"

[worker]
name = "gpu-node-7"
job_slots = 2
pipelines = ["scenes", "transcript"]
models_dir = "{tmp_path}/models"

[database]
url = "postgresql://u@db/annot"

[ice]
host_addresses = ["127.0.0.1"]
[[ice.servers]]
urls = "turn:turn.example.org:3478?transport=udp"
username = "u"
credential = "p"

[storage.vast]
base_path = "{tmp_path}/vast"
type = "vast"
description = "VAST share"
user_subdir = "alice"
""",
    )
    s = load(path)
    assert s.source == path
    assert s.signaling.room == "lab"
    assert s.worker.job_slots == 2 and s.worker.pipelines == ["scenes", "transcript"]
    assert s.worker.models_dir == tmp_path / "models"
    assert s.database.url == "postgresql+asyncpg://u@db/annot"
    assert s.ice.servers[0].urls == ["turn:turn.example.org:3478?transport=udp"]
    storage = s.storage_config()
    assert storage.list_backends() == ["vast"]
    assert storage.backends["vast"].user_subdir == "alice"
    assert storage.resolve_path("vast", "alice", "a.mp4") == tmp_path / "vast" / "alice" / "a.mp4"


def test_example_config_is_valid() -> None:
    s = load(ROOT / "config.example.toml")
    assert s.storage, "config.example.toml should show storage backends"


def test_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[worker]\njob_slots = 1\n")
    s = load(
        path,
        RTC_ANNOTATOR_WORKER_JOB_SLOTS="3",
        RTC_ANNOTATOR_WORKER_PIPELINES="scenes, metadata",
        RTC_ANNOTATOR_ICE_HOST_ADDRESSES='["127.0.0.1"]',
        RTC_ANNOTATOR_DATABASE_URL="sqlite+aiosqlite:////tmp/x.db",
        RTC_ANNOTATOR_SIGNALING_ROOM="lab",
        RTC_ANNOTATOR_TEST_PG_URL="ignored: not a section",
        RTC_ANNOTATOR_CONFIG="ignored here",
    )
    assert s.worker.job_slots == 3
    assert s.worker.pipelines == ["scenes", "metadata"]
    assert s.ice.host_addresses == ["127.0.0.1"]
    assert s.database.url == "sqlite+aiosqlite:////tmp/x.db"
    assert s.signaling.room == "lab"


def test_env_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load(None, RTC_ANNOTATOR_WORKER_JOBSLOTS="2")
    assert "RTC_ANNOTATOR_WORKER_JOBSLOTS" in info.value.message
    assert "job_slots" in info.value.hint


def test_env_bad_value_names_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load(None, RTC_ANNOTATOR_WORKER_JOB_SLOTS="many")
    assert "RTC_ANNOTATOR_WORKER_JOB_SLOTS" in info.value.message
    assert "[worker] job_slots" in info.value.message


def test_config_file_from_env_variable(tmp_path: Path) -> None:
    path = write(tmp_path, '[signaling]\nroom = "from-env-file"\n')
    s = load_settings(None, env={"RTC_ANNOTATOR_CONFIG": str(path)})
    assert s.signaling.room == "from-env-file"


def test_shared_storage_root_compat(tmp_path: Path) -> None:
    s = load(None, SHARED_STORAGE_ROOT=str(tmp_path))
    storage = s.storage_config()
    assert storage.list_backends() == ["default"]
    assert storage.backends["default"].base_path == tmp_path
    path = write(tmp_path, f'[storage.vast]\nbase_path = "{tmp_path}"\n')
    assert load(path, SHARED_STORAGE_ROOT="/elsewhere").storage_config().list_backends() == ["vast"]


@pytest.mark.parametrize(
    ("text", "fragments", "hint_fragment"),
    [
        ("[worker]\njob_slot = 2\n", ["[worker] job_slot", "unknown key"], "did you mean 'job_slots'"),
        ("[storage.vast]\ntype = 'vast'\n", ["[storage.vast] base_path", "required key is missing"],
         'base_path = "/absolute/mount/point"'),
        ("[worker]\njob_slots = 'two'\n", ["[worker] job_slots", "valid integer"], "job_slots"),
        ("[worker]\njob_slots = 0\n", ["[worker] job_slots", "greater than or equal to 1"], ""),
        ("[storage.vast]\nbase_path = 'relative/path'\n", ["[storage.vast] base_path", "absolute"], ""),
        ("[storage.vast]\nbase_path = '/m'\nuser_subdir = '../x'\n",
         ["[storage.vast] user_subdir", "'..' component"], ""),
        ("[storage.vast]\nbase_path = '/m'\nbase = 1\n", ["[storage.vast] base", "unknown key"],
         "did you mean 'base_path'"),
        ("[storage.\"bad name\"]\nbase_path = '/m'\n", ["[storage.bad name]", "invalid storage backend name"],
         "letters"),
        ("storage = 3\n", ["storage must be tables"], "[storage.vast]"),
        ("[workers]\nname = 'x'\n", ["(top level) workers", "unknown section"], "did you mean 'worker'"),
        ("[worker\n", ["invalid TOML", "line 1"], "fix the syntax"),
        ("[signaling]\nurl = 'http://x'\n", ["[signaling] url", "ws://"], ""),
        ("[worker]\npipelines = ['scenes', 'faces']\n", ["[worker] pipelines", "unknown pipeline 'faces'"], ""),
        ("[ice]\nservers = [{urls = 'http://x'}]\n", ["[ice] servers.0.urls", "not a stun:"], ""),
        ("[database]\nurl = 'mysql://x'\n", ["[database] url", "sqlite+aiosqlite://"], ""),
    ],
)
def test_bad_config_messages(
    tmp_path: Path, text: str, fragments: list[str], hint_fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    assert err.code == "CONFIG_ERROR"
    assert str(path) in err.message
    for fragment in fragments:
        assert fragment in err.message, err.message
    assert hint_fragment in err.hint, err.hint
    assert "\n" not in err.one_line()


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(binary)
    if os.geteuid() != 0:  # root reads anything
        locked = write(tmp_path, "[worker]\n", "locked.toml")
        locked.chmod(0)
        with pytest.raises(ConfigError, match="permission denied"):
            load(locked)
