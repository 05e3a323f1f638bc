"""docker/: no Docker engine here, so the files are checked against the code they drive: the
compose file parses, its signaling command line goes through the real argparse of
`python -m signaling`, the worker's environment goes through the real config loader, the
commands in the Dockerfiles exist, and every variable is documented."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rtc_annotator.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
TEST_ENV = {
    "SIGNALING_ADMIN_SECRET": "admin-s3cret",
    "TURN_SECRET": "turn-s3cret",
    "POSTGRES_PASSWORD": "pg-s3cret",
    "SERVE_TOKEN": "serve-s3cret",
    "PUBLIC_HOST": "signal.example.org",
    "WORKER_TOKEN": "rtca1.claims.mac",
}
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR:?error} substitution."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise KeyError(f"{name} is required: {arg}")
        return arg or ""

    return _VAR.sub(sub, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def variables(text: str) -> set[str]:
    return {m.group("name") for m in _VAR.finditer(text)}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: str(v) for k, v in raw.items()}


def test_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"signaling", "coturn", "postgres", "api", "worker"}
    assert services["worker"]["profiles"] == ["worker"]
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    for name in ("signaling", "api", "worker"):
        build = services[name]["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).is_file()


def test_required_secrets_are_enforced(compose: dict[str, Any]) -> None:
    env = dict(TEST_ENV)
    del env["TURN_SECRET"]
    with pytest.raises(KeyError, match="TURN_SECRET"):
        interpolate(compose["services"]["signaling"], env)


def test_signaling_command_parses_with_the_real_argparse(compose: dict[str, Any]) -> None:
    svc = interpolate(compose["services"]["signaling"], TEST_ENV)
    env = {**os.environ, **env_of(svc)}
    code = ("import json, sys\n"
            "from signaling.__main__ import parse_args\n"
            "c = parse_args(json.loads(sys.argv[1]))\n"
            "print(json.dumps({'host': c.host, 'port': c.port, 'state': str(c.state_path),"
            " 'admin': c.admin_secret, 'stun': list(c.ice.stun_urls),"
            " 'turn': list(c.ice.turn_urls), 'secret': c.ice.turn_secret,"
            " 'ttl': c.ice.turn_ttl_s}))\n")
    r = subprocess.run([sys.executable, "-c", code, json.dumps(svc["command"])],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg == {
        "host": "0.0.0.0", "port": 8765, "state": "/var/lib/signaling/state.sqlite3",
        "admin": "admin-s3cret", "stun": ["stun:signal.example.org:3478"],
        "turn": ["turn:signal.example.org:3478?transport=udp"], "secret": "turn-s3cret",
        "ttl": 3600,
    }
    volume = svc["volumes"][0].split(":")
    assert volume[1] == str(Path(cfg["state"]).parent)


def test_signaling_image_default_command_parses() -> None:
    text = (DOCKER / "signaling.Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    entry = json.loads(re.search(r"^ENTRYPOINT (.*)$", text, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (\[.*)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert entry == ["python", "-m", "signaling"]
    env = {**os.environ, "SIGNALING_ADMIN_SECRET": "x"}
    r = subprocess.run([sys.executable, "-c",
                        "import sys; from signaling.__main__ import parse_args; "
                        "print(parse_args(sys.argv[1:]).port)", *cmd],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "8765", r.stderr


def test_coturn_shares_the_turn_secret_with_signaling(compose: dict[str, Any]) -> None:
    coturn = interpolate(compose["services"]["coturn"], TEST_ENV)
    signaling = interpolate(compose["services"]["signaling"], TEST_ENV)
    args = coturn["command"]
    assert "--use-auth-secret" in args
    assert env_of(signaling)["SIGNALING_TURN_SECRET"] == TEST_ENV["TURN_SECRET"]
    assert env_of(coturn)["TURN_SECRET"] == TEST_ENV["TURN_SECRET"]
    assert "--listening-port=3478" in args
    assert any(u.startswith("turn:") and ":3478" in u for u in signaling["command"])


def test_no_secret_on_a_command_line(compose: dict[str, Any], tmp_path: Path) -> None:
    """`ps` shows command lines to every user: no service gets a secret as an argument. coturn's
    entrypoint writes it to a private config file and passes that file (run here with sh and a
    stand-in turnserver that prints what it got)."""
    secrets_ = {v for k, v in TEST_ENV.items() if "SECRET" in k or "PASSWORD" in k}
    for name, svc in compose["services"].items():
        svc = interpolate(svc, TEST_ENV)
        argv = [*(svc.get("entrypoint") or []), *(svc.get("command") or [])]
        assert not any(s in str(a) for a in argv for s in secrets_), name
    coturn = interpolate(compose["services"]["coturn"], TEST_ENV)
    entry = [a.replace("$$", "$") for a in coturn["entrypoint"]]   # compose's escape
    stub = tmp_path / "bin" / "turnserver"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\ncat "$2"\n')
    stub.chmod(0o755)
    r = subprocess.run([*entry, "--use-auth-secret", "--realm=x"], capture_output=True,
                       text=True, timeout=30,
                       env={"PATH": f"{stub.parent}:/usr/bin:/bin", "TURN_SECRET": "-t $s'"})
    Path("/tmp/turn-secret.conf").unlink(missing_ok=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["-c", "/tmp/turn-secret.conf", "--use-auth-secret",
                                     "--realm=x", "static-auth-secret=-t $s'"]


def test_worker_environment_goes_through_the_config_loader(compose: dict[str, Any]) -> None:
    worker = interpolate(compose["services"]["worker"], TEST_ENV)
    env = env_of(worker)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in worker["volumes"]}
    assert mounts["/etc/rtc-annotator/worker.toml"] == "./worker.toml"
    settings = load_settings(DOCKER / "worker.toml", env=env)
    assert settings.signaling.url == "ws://signaling:8765/ws"
    assert settings.signaling.token == TEST_ENV["WORKER_TOKEN"]
    assert settings.worker.name == "compose-worker"
    assert str(settings.worker.models_dir) == "/models" and "/models" in mounts
    assert str(settings.worker.cache_dir) == "/cache" and "/cache" in mounts
    assert {str(s.base_path) for s in settings.storage.values()} <= set(mounts)
    grace = float(str(worker["stop_grace_period"]).rstrip("s"))
    assert settings.worker.shutdown_grace_s < grace


def test_api_service(compose: dict[str, Any]) -> None:
    api = interpolate(compose["services"]["api"], TEST_ENV)
    url = env_of(api)["RTC_ANNOTATOR_DATABASE_URL"]
    settings = load_settings(None, env={"RTC_ANNOTATOR_DATABASE_URL": url},
                             use_default_file=False)
    assert settings.database.url == "postgresql+asyncpg://annot:pg-s3cret@postgres:5432/annot"
    # serve listens on 0.0.0.0 in its container: it refuses to start without a token
    assert env_of(api)["RTC_ANNOTATOR_SERVE_TOKEN"] == "serve-s3cret"
    pg = env_of(interpolate(compose["services"]["postgres"], TEST_ENV))
    assert (pg["POSTGRES_USER"], pg["POSTGRES_DB"]) == ("annot", "annot")


def test_cli_commands_used_by_the_images_exist(compose: dict[str, Any]) -> None:
    """`rtc-annotator serve ...` (api) and the worker image's entrypoint accept their flags."""
    api = compose["services"]["api"]
    worker_entry = json.loads(re.search(  # type: ignore[union-attr]
        r"^ENTRYPOINT (.*)$", (DOCKER / "worker.Dockerfile").read_text(), re.M).group(1))
    assert worker_entry == ["tini", "--", "rtc-annotator", "worker", "--config",
                            "/etc/rtc-annotator/worker.toml"]
    for argv in (api["entrypoint"] + api["command"], worker_entry[2:]):
        assert argv[0] == "rtc-annotator"
        r = subprocess.run([sys.executable, "-m", "rtc_annotator", *argv[1:], "--help"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (argv, r.stderr)


def test_worker_image() -> None:
    text = (DOCKER / "worker.Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)$", text, re.M).group(1)  # type: ignore[union-attr]
    assert base.startswith("nvidia/cuda:12.") and "cudnn-runtime" in base
    assert "download.pytorch.org/whl/cu" in text
    for dockerfile in ("worker.Dockerfile", "signaling.Dockerfile"):
        for m in re.finditer(r"^COPY (.+) \S+$", (DOCKER / dockerfile).read_text(), re.M):
            for src in m.group(1).split():
                assert (ROOT / src).exists(), (dockerfile, src)


def test_every_variable_is_documented(compose: dict[str, Any]) -> None:
    doc = (ROOT / "docs" / "deployment.md").read_text()
    example = (DOCKER / "env.example").read_text()
    compose_text = (DOCKER / "compose.yaml").read_text()
    names = variables(compose_text)
    assert {"SIGNALING_ADMIN_SECRET", "TURN_SECRET", "POSTGRES_PASSWORD"} <= names
    for name in names:
        assert f"`{name}`" in doc, f"{name} is not in docs/deployment.md"
        assert re.search(rf"^{name}=", example, re.M), f"{name} is not in docker/env.example"
    for svc in compose["services"].values():
        for key in env_of(svc):
            assert f"`{key}`" in doc, f"{key} is not in docs/deployment.md"
    for dockerfile in ("worker.Dockerfile", "signaling.Dockerfile"):
        text = (DOCKER / dockerfile).read_text()
        for name in re.findall(r"^ARG (\w+)", text, re.M):
            assert f"`{name}`" in doc, f"build arg {name} is not in docs/deployment.md"
