"""`rtc-annotator trust`: the admin key, a worker key made on first use (mode 0600), a vouch on
disk, and a client config that trusts it, used for a real peer connection."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from pathlib import Path

import pytest
import tomli_w
from typer.testing import CliRunner

from rtc_annotator import trust
from rtc_annotator.cli import app
from rtc_annotator.config import load_settings
from rtc_annotator.errors import ConfigError
from rtc_annotator.transport.peer import LinkOptions, PeerLink, signaler_pair
from tests.transport.conftest import LOCAL_ICE


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


async def test_admin_vouches_for_a_worker_key_that_a_client_then_accepts(tmp_path: Path) -> None:
    admin_key = tmp_path / "admin" / "admin.key"
    code, out, err = _invoke("trust", "admin-init", "--admin-key", str(admin_key))
    assert code == 0, err
    admin_pub = out.strip()
    assert admin_pub.startswith("ed25519:") and "keep it off the signaling server" in err
    assert stat.S_IMODE(admin_key.stat().st_mode) == 0o600
    # a second init refuses to overwrite the key
    code, _, err = _invoke("trust", "admin-init", "--admin-key", str(admin_key))
    assert code == 2 and "already exists" in err

    worker_cfg = tmp_path / "worker" / "config.toml"
    worker_cfg.parent.mkdir()
    worker_cfg.write_text(tomli_w.dumps({"worker": {"name": "gpu1"}}))
    code, out, err = _invoke("trust", "show-key", "-c", str(worker_cfg))
    assert code == 0, err
    worker_pub = out.strip()
    key_file = worker_cfg.parent / "identity.key"  # next to the config, created on first use
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "not vouched for" in err
    code, out, _ = _invoke("trust", "show-key", "-c", str(worker_cfg))
    assert out.strip() == worker_pub  # the same key every time

    vouch_file = worker_cfg.parent / "identity.vouch"
    code, _, err = _invoke("trust", "vouch", worker_pub, "--name", "gpu1", "--room", "lab",
                           "--days", "30", "--admin-key", str(admin_key), "--out",
                           str(vouch_file))
    assert code == 0, err
    code, out, err = _invoke("trust", "show-key", "-c", str(worker_cfg), "--json")
    shown = json.loads(out)
    assert shown["public_key"] == worker_pub
    assert shown["vouch"]["name"] == "gpu1" and shown["vouch"]["room"] == "lab"
    assert shown["vouch"]["admin_key"] == admin_pub

    for bad, why in (("ed25519:c2hvcnQ", "has 5 bytes, expected 32"),
                     ("rsa:abc", "does not start with 'ed25519:'")):
        code, _, err = _invoke("trust", "vouch", bad, "--name", "x", "--room", "lab",
                               "--admin-key", str(admin_key))
        assert code == 2 and "BAD_KEY" in err and why in err and "trust show-key" in err

    client_cfg = tmp_path / "client" / "config.toml"
    client_cfg.parent.mkdir()
    client_cfg.write_text(tomli_w.dumps({"signaling": {"room": "lab"},
                                      "trust": {"admin_public_keys": [admin_pub],
                                                "require_vouched": True}}))
    worker_settings = load_settings(worker_cfg)
    client_settings = load_settings(client_cfg)
    a, b = signaler_pair()
    client, worker = await asyncio.gather(
        PeerLink.connect(a, offer=True, role="client", options=LinkOptions(
            ice=LOCAL_ICE, connect_timeout_s=15, session_id="s",
            trust=trust.policy(client_settings, client_settings.signaling.room))),
        PeerLink.connect(b, offer=False, role="worker", options=LinkOptions(
            ice=LOCAL_ICE, connect_timeout_s=15, session_id="s",
            identity=trust.load_identity(worker_settings))))
    try:
        assert client.peer_key == worker_pub
        assert client.peer_vouch is not None and client.peer_vouch.name == "gpu1"
    finally:
        await client.close()
        await worker.close()


def test_require_vouched_without_admin_keys_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(tomli_w.dumps({"trust": {"require_vouched": True}}))
    settings = load_settings(cfg)
    try:
        trust.policy(settings, "lab")
    except Exception as exc:
        assert "admin_public_keys is empty" in str(exc)
    else:
        raise AssertionError("require_vouched without admin keys was accepted")


def test_key_falls_back_to_the_data_dir_when_the_config_folder_is_not_writable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the config's "folder" is a file: nothing can be created in it
    settings = load_settings(None, env={}, use_default_file=False)
    settings.source = blocker / "worker.toml"
    caplog.set_level(logging.WARNING, logger="rtc_annotator.trust")
    first = trust.load_identity(settings)
    assert (tmp_path / "data" / "rtc-annotator" / "identity.key").is_file()
    assert any("using the user data dir" in r.getMessage() for r in caplog.records)
    assert trust.load_identity(settings).public_key == first.public_key  # kept across starts
    # an explicitly configured key path never falls back
    settings.trust.key_path = blocker / "identity.key"
    with pytest.raises(ConfigError, match="cannot create key"):
        trust.load_identity(settings)
