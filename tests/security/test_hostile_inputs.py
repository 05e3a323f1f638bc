"""Hostile inputs: paths in job requests, uploaded file names, config files, search strings,
oversized messages and files. Real aiortc links, a real JobServer, a real HTTP API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc_annotator.config import load_settings
from rtc_annotator.errors import ConfigError
from rtc_annotator.protocol import peer as proto
from rtc_annotator.transport.filetransfer import sanitize_name, sha256_file
from tests.api.conftest import Api, api, seed_video  # noqa: F401
from tests.store.conftest import backend, store, store_url  # noqa: F401
from tests.transport.conftest import RecordingSink, make_file

from .conftest import Env, ToyExecutor

# --------------------------------------------------------------------------- opened-file audit

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], str | bytes | Path):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def _under(path: str, root: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top + os.sep)


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """Every path this process opens while the test runs (builtin open, os.open, io)."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


# --------------------------------------------------------------------------- hostile paths

def hostile_paths(outside: Path) -> list[tuple[str, str]]:
    """(user_subdir, relative_path) pairs that must never reach a file outside the base."""
    name = outside.name
    return [
        ("", f"../{name}/secret.mp4"),
        ("alice", f"../../{name}/secret.mp4"),
        ("..", f"{name}/secret.mp4"),
        (f"../{name}", "secret.mp4"),
        ("", "alice/../../" + name + "/secret.mp4"),
        ("", "link-out.mp4"),                 # symlink inside the base -> the sentinel
        ("", "dir-out/secret.mp4"),           # symlinked directory -> outside
        ("", str(outside / "secret.mp4")),    # absolute
        ("", "secret.mp4\x00.txt"),           # NUL
        ("", "\\\\server\\share\\secret.mp4"),  # UNC
        ("", "//server/share/secret.mp4"),
        ("", "C:\\Windows\\secret.mp4"),      # drive letters, backslashes
        ("", "C:/secret.mp4"),
        ("", "..\\" + name + "\\secret.mp4"),
        ("", "a/./b.mp4"),
        ("", "a//b.mp4"),
        ("", "a/"),
        ("", "x" * 5000),                     # over-long
        ("", "/".join(["d"] * 3000)),
        ("", "clip\n.mp4"),
        ("", "."),
        ("", ""),
    ]


async def test_hostile_shared_paths_get_path_error_and_open_nothing_outside(
        env: Env, tmp_path: Path, opened: list[str]) -> None:
    base = tmp_path / "share"
    outside = tmp_path / "outside"
    sentinel = make_file(outside / "secret.mp4", 4096)
    make_file(base / "alice" / "ok.mp4", 4096)
    os.symlink(sentinel, base / "link-out.mp4")
    os.symlink(outside, base / "dir-out")
    executor = ToyExecutor()
    server = env.server(executor, storage=env.storage(base))
    link, _ = await env.connect(server)
    size = sentinel.stat().st_size
    fingerprint = proto.fingerprint_file(sentinel)
    opened.clear()

    for i, (sub, rel) in enumerate(hostile_paths(outside)):
        await link.send(proto.JobRequest(
            job_id=f"hostile-{i}", pipelines={"scenes": {}},
            input=proto.SharedInput(storage_backend="vast", user_subdir=sub, relative_path=rel,
                                    size=size, fingerprint=fingerprint)))
        reply = await asyncio.wait_for(link.recv(), 10)
        assert reply.type == "PATH_ERROR", (sub, rel, reply)
        assert isinstance(reply, proto.PathErrorMsg)
        assert reply.reason in ("escape", "invalid", "missing"), (sub, rel, reply)
        assert str(base) not in reply.message  # the worker's base path is never told
    # unknown backend: a clear BACKEND_NOT_AVAILABLE, not a path lookup
    await link.send(proto.JobRequest(
        job_id="hostile-backend", pipelines={"scenes": {}},
        input=proto.SharedInput(storage_backend="../etc", relative_path="passwd", size=1,
                                fingerprint="v1:0")))
    assert (await asyncio.wait_for(link.recv(), 10)).type == "BACKEND_NOT_AVAILABLE"

    assert executor.paths == []  # the executor never received anything
    leaked = [p for p in opened if _under(p, outside)]
    assert leaked == [], leaked
    # the control: a good path inside the base is opened and runs
    ok = base / "alice" / "ok.mp4"
    await link.send(proto.JobRequest(
        job_id="fine", pipelines={"scenes": {}},
        input=proto.SharedInput(storage_backend="vast", user_subdir="alice",
                                relative_path="ok.mp4", size=ok.stat().st_size,
                                fingerprint=proto.fingerprint_file(ok))))
    assert (await asyncio.wait_for(link.recv(), 10)).type == "JOB_ACCEPTED"
    await asyncio.wait_for(executor.started.wait(), 10)
    assert executor.paths == [ok]
    assert any(_under(p, ok) for p in opened)


# --------------------------------------------------------------------------- uploaded names

def _assert_safe_name(original: str, safe: str) -> None:
    assert safe and safe not in (".", "..")
    assert "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert not any(unicodedata.category(ch) == "Cc" for ch in safe), repr(safe)
    assert safe == safe.strip(" ."), repr(safe)
    assert len(safe.encode()) <= 120, (original, safe)


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=400)
       | st.lists(st.sampled_from(["..", "/", "\\", ".", " ", "\x00", "\x85", "a", "\u00e9",
                                   "\U0001f600", "C:", "con", ".mp4", "\u2028", "\x1b[31m"]),
                  max_size=80).map("".join))
def test_sanitized_upload_names_are_safe(name: str) -> None:
    _assert_safe_name(name, sanitize_name(name))


@pytest.mark.parametrize("name", [
    "../../../../etc/passwd", "..\\..\\boot.ini", "..", ".", "", "   ", "/", "a/b/c.mp4",
    "\x00\x01\x02.mp4", "clip\r\n.mp4", "\x1b[2Jclip.mp4", "\u202eevil\u202c.mp4",
    "x" * 300 + ".mp4", "\U0001f600" * 100 + "." + "\U0001f600" * 30, "CON", "nul.mp4",
    "a" * 200 + "." + "b" * 40 + " " * 10 + "c",
])
def test_sanitized_upload_names_examples(name: str) -> None:
    _assert_safe_name(name, sanitize_name(name))


async def test_uploaded_file_with_hostile_name_lands_in_the_cache(env: Env,
                                                                  tmp_path: Path) -> None:
    hostile = "\x1b[31m..evil|name?*<>:\x07" + "z" * 200 + ".mp4"
    video = make_file(tmp_path / "home" / hostile, 20_000)
    executor = ToyExecutor(batches=1, per_batch=1)
    server = env.server(executor)
    link, _ = await env.connect(server)
    result = await env.client(link, RecordingSink()).submit(video, pipelines={"scenes": {}})
    assert result.ok and result.transfer == "rtc"
    [path] = executor.paths
    blobs = (server.cache.root / "blobs").resolve()
    assert path.resolve().parent.parent == blobs  # blobs/<sha256>/<name>
    assert path.parent.name == sha256_file(video)
    _assert_safe_name(hostile, path.name)


# --------------------------------------------------------------------------- oversized

async def test_oversized_control_messages_and_uploads_are_refused(env: Env,
                                                                  tmp_path: Path) -> None:
    server = env.server(ToyExecutor(), max_bytes=10_000)
    client, worker = await env.connect(server, max_message_bytes=32 * 1024)
    replies: list[dict[str, Any]] = []
    got_error = asyncio.Event()

    def on_message(data: bytes) -> None:
        replies.append(msgpack.unpackb(data))
        if replies[-1]["type"] == "ERROR":
            got_error.set()

    client.control.on("message", on_message)
    client.control.send(msgpack.packb({"type": "PING", "nonce": 1, "pad": "x" * 40_000}))
    await asyncio.wait_for(got_error.wait(), 10)
    [err] = [r for r in replies if r["type"] == "ERROR"]
    assert err["error"]["code"] == "PROTOCOL_ERROR" and "exceeds" in err["error"]["message"]
    # a declared upload over max_upload_bytes: refused before a byte is sent
    await client.send(proto.JobRequest(job_id="big", pipelines={"scenes": {}},
                                       input=proto.RtcInput(name="a.mp4", size=10**15,
                                                            sha256="ab" * 32)))
    reply = await asyncio.wait_for(client.recv(), 10)
    assert isinstance(reply, proto.JobRejected) and reply.error.code == "FILE_TOO_LARGE"
    # a client that lies in the offer (small job, huge offer) is refused too
    await client.send(proto.TransferOffer(transfer_no=9, job_id="big", name="a.mp4",
                                          size=10**15, sha256="cd" * 32))
    status = await asyncio.wait_for(client.recv(), 10)
    assert isinstance(status, proto.TransferStatus)
    assert status.error is not None and status.error.code == "FILE_TOO_LARGE"
    assert worker.bulk_received_bytes == 0 and not worker.closed.is_set()
    assert not list((server.cache.root / "partial").glob("cd*"))  # no partial file left


# --------------------------------------------------------------------------- config files

def _hostile_configs(tmp: Path) -> dict[str, Path]:
    texts: dict[str, str | bytes] = {
        "deep_array": "x = " + "[" * 100_000 + "]" * 100_000,
        "deep_inline": "x = " + "{a = " * 5000 + "1" + "}" * 5000,
        "deep_dotted": "[" + ".".join(["a"] * 20_000) + "]\n",
        "thousands_of_keys": "\n".join(f"k{i} = {i}" for i in range(50_000)),
        "huge": "[worker]\njob_slots = \"" + "x" * (8 * 1024 * 1024) + "\"\n",
        "binary": os.urandom(4096),
        "latin1": b"[worker]\nname = \"\xe9\"\n",
        "nul": "[worker]\nname = \"a\x00b\"\n",
        "newline_in_key": '[storage."a\\nb"]\nbase_path = "/tmp"\n',
        "wrong_types": '[worker]\njob_slots = "many"\nmax_upload_bytes = -5\n'
                       '[signaling]\nurl = 5\n',
        "huge_int": "[worker]\njob_slots = " + "9" * 4000 + "\n",
        "storage_not_a_table": "storage = [1, 2]\n",
        "storage_escape": '[storage."../x"]\nbase_path = "relative"\n',
        "section_is_int": "worker = 3\n",
        "unclosed": '[worker\nname = "a',
    }
    out: dict[str, Path] = {}
    for name, text in texts.items():
        path = tmp / f"{name}.toml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        out[name] = path
    return out


def test_hostile_config_files_give_one_line_config_errors(tmp_path: Path) -> None:
    for name, path in _hostile_configs(tmp_path).items():
        with pytest.raises(ConfigError) as err:
            load_settings(path, env={})
        message, hint = err.value.message, err.value.hint
        assert str(path) in message, name
        assert "\n" not in message and "\n" not in hint, (name, message)
        assert len(message) < 4000, (name, len(message))


def test_hostile_config_through_the_cli_has_no_traceback(tmp_path: Path) -> None:
    configs = _hostile_configs(tmp_path)
    cli = Path(sys.executable).with_name("rtc-annotator")
    for name in ("deep_array", "binary", "newline_in_key", "thousands_of_keys"):
        proc = subprocess.run([str(cli), "config", "check", "--config", str(configs[name])],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout, name
        assert "CONFIG_ERROR" in proc.stderr or "config" in proc.stderr.lower(), proc.stderr


# --------------------------------------------------------------------------- search strings

HOSTILE_QUERIES = [
    "' OR 1=1; --", "\"; DROP TABLE artifacts; --", "'); DELETE FROM assets; --",
    "\"", "'", "\"\"\"", "''", "a\"b", "NEAR(a b)", "a NEAR/2 b", "a AND", "OR", "NOT a",
    "a OR b AND NOT c", "(", ")", "((a)", "*", "a*", "*a", "^a", "text:gradient",
    "payload:x", "{a b}", "a:b:c", "-a", "+a", "a & b | !c", "a <-> b", "!!", ":*",
    "gradient\x00descent", "\x00", "\x01\x02", "%", "_", "\\", "\\\\'", "$1", "?", ":x",
    "\u202e", "\U0001f600", "descent" * 1500, "x" * 10_000, " ", "\t\n",
    "a" + " OR a" * 500,
]


async def test_hostile_search_strings_through_the_http_api(api: Api) -> None:  # noqa: F811
    asset = await seed_video(api.store)
    path = f"/v1/videos/{asset}/find"
    for text in HOSTILE_QUERIES:
        for params in ({"q": text}, {"q": text, "direction": "prev", "from_ms": "5000"},
                       {"q": "gradient", "cursor": text[:2000]},
                       {"q": text, "source": "ocr", "from_ms": "-1"}):
            status, data, body, _ = await api.call("GET", path, params=params)
            assert status in (200, 400, 404), (text[:40], status, body[:300])
            if status == 400 and data is not None:
                assert data["error"]["code"] and data["error"]["message"], data
            elif status == 400:  # a URL over aiohttp's 8 KiB request line: its own plain 400
                assert len(text) > 6000, (text[:40], body[:200])
    # the store is intact and a normal search still works
    status, data, _, _ = await api.call("GET", path, params={"q": "gradient"})
    assert status == 200 and data["match"]["source"] == "transcript"


async def test_hostile_search_strings_through_the_query_layer(api: Api) -> None:  # noqa: F811
    """Same strings without HTTP's URL limit (what the CLI's find does)."""
    from rtc_annotator.errors import RtcAnnotatorError
    from rtc_annotator.query import find

    asset = await seed_video(api.store)
    for text in HOSTILE_QUERIES:
        for direction in ("next", "prev"):
            try:
                await find(api.store, asset, text, 0 if direction == "next" else 10_000,
                           direction)
            except RtcAnnotatorError as exc:
                assert exc.code and exc.message
    hit = await find(api.store, asset, "gradient", 0, "next")
    assert hit is not None
