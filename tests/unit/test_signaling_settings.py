"""The signaling server's settings follow the project's conventions: a [signaling_server]
section, RTC_ANNOTATOR_SIGNALING_SERVER_* variables, flags; flag > variable > file > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtc_annotator.config import load_settings
from signaling.__main__ import parse_args


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in list(os.environ):
        if var.startswith(("RTC_ANNOTATOR_", "SIGNALING_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("SIGNALING_ADMIN_SECRET", "admin-secret-x")


def _file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(body)
    return path


def test_defaults_match_the_server_dataclass(tmp_path: Path) -> None:
    cfg = parse_args(["--config", str(_file(tmp_path, ""))])
    assert (cfg.host, cfg.port, cfg.heartbeat_s, cfg.gone_after_s) == ("127.0.0.1", 8765, 5.0,
                                                                       12.0)
    assert cfg.state_path == Path("signaling-state.sqlite3") and cfg.ice.turn_ttl_s == 3600


def test_file_then_variable_then_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "turn").write_text("turn-secret-y\n")
    path = _file(tmp_path, f'[signaling_server]\nport = 9100\nhost = "0.0.0.0"\n'
                           f'state = "{tmp_path / "st.sqlite3"}"\nheartbeat_s = 2.0\n'
                           f'turn = ["turn:127.0.0.1:3478"]\n'
                           f'turn_secret_file = "{tmp_path / "turn"}"\nrate_per_s = 7\n')
    cfg = parse_args(["--config", str(path)])
    assert (cfg.port, cfg.host, cfg.heartbeat_s, cfg.rate_per_s) == (9100, "0.0.0.0", 2.0, 7.0)
    assert cfg.state_path == tmp_path / "st.sqlite3"
    assert cfg.ice.turn_urls == ("turn:127.0.0.1:3478",) and cfg.ice.turn_secret == "turn-secret-y"

    monkeypatch.setenv("RTC_ANNOTATOR_SIGNALING_SERVER_PORT", "9200")
    monkeypatch.setenv("RTC_ANNOTATOR_SIGNALING_SERVER_STUN", "stun:127.0.0.1:3478")
    cfg = parse_args(["--config", str(path)])
    assert cfg.port == 9200 and cfg.ice.stun_urls == ("stun:127.0.0.1:3478",)

    cfg = parse_args(["--config", str(path), "--port", "9300", "--rate", "9"])
    assert cfg.port == 9300 and cfg.rate_per_s == 9.0 and cfg.heartbeat_s == 2.0


def test_client_signaling_variables_do_not_collide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTC_ANNOTATOR_SIGNALING_URL", "ws://10.0.0.1:1/ws")
    monkeypatch.setenv("RTC_ANNOTATOR_SIGNALING_SERVER_PORT", "9400")
    s = load_settings(use_default_file=False)
    assert s.signaling.url == "ws://10.0.0.1:1/ws" and s.signaling_server.port == 9400


def test_bad_values_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTC_ANNOTATOR_SIGNALING_SERVER_PORTT", "1")
    with pytest.raises(SystemExit) as exc:
        parse_args(["--config", str(_file(tmp_path, ""))])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "RTC_ANNOTATOR_SIGNALING_SERVER_PORTT" in err and "port" in err
    monkeypatch.delenv("RTC_ANNOTATOR_SIGNALING_SERVER_PORTT")
    with pytest.raises(SystemExit):
        parse_args(["--config", str(_file(tmp_path, "[signaling_server]\nport = 70000\n"))])
    assert "[signaling_server] port" in capsys.readouterr().err


def test_admin_secret_file_from_the_section(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNALING_ADMIN_SECRET")
    (tmp_path / "admin").write_text("-from-file\n")
    path = _file(tmp_path, f'[signaling_server]\nadmin_secret_file = "{tmp_path / "admin"}"\n')
    assert parse_args(["--config", str(path)]).admin_secret == "-from-file"
