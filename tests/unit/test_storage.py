"""StorageBackend / StorageConfig / StorageResolver: resolution and every rejection class."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc_annotator.errors import NotUnderAnyBackend, PathRejected, UnknownBackend
from rtc_annotator.storage import (
    StorageBackend,
    StorageConfig,
    StorageResolver,
    split_wire_path,
)


@pytest.fixture()
def vast(tmp_path: Path) -> StorageBackend:
    base = tmp_path / "mnt" / "vast"
    (base / "alice" / "clips").mkdir(parents=True)
    (base / "alice" / "clips" / "a.mp4").write_bytes(b"x")
    return StorageBackend(name="vast", base_path=base, type="vast")


@pytest.mark.parametrize(
    ("user_subdir", "relative_path", "expected"),
    [
        ("alice", "clips/a.mp4", "alice/clips/a.mp4"),
        ("", "alice/clips/a.mp4", "alice/clips/a.mp4"),
        ("alice/clips", "a.mp4", "alice/clips/a.mp4"),
        ("alice", "not-yet-there.mp4", "alice/not-yet-there.mp4"),
        ("bob", "x y/äöü.mp4", "bob/x y/äöü.mp4"),
        ("alice", "..hidden/a..b.mp4", "alice/..hidden/a..b.mp4"),
        ("alice", ".dotfile", "alice/.dotfile"),
    ],
)
def test_resolves_inside_base(
    vast: StorageBackend, user_subdir: str, relative_path: str, expected: str
) -> None:
    assert vast.resolve_path(user_subdir, relative_path) == vast.base_path / expected


@pytest.mark.parametrize(
    ("user_subdir", "relative_path", "fragment"),
    [
        ("alice", "../bob/a.mp4", "'..' component"),
        ("..", "etc/passwd", "'..' component"),
        ("alice", "clips/../../../etc/passwd", "'..' component"),
        ("alice", "/etc/passwd", "absolute"),
        ("/alice", "a.mp4", "absolute"),
        ("alice", "a\x00.mp4", "NUL byte"),
        ("alice", "a\n.mp4", "control character"),
        ("alice", "C:/Windows/x.mp4", "drive letter"),
        ("alice", "c:x.mp4", "drive letter"),
        ("D:", "x.mp4", "drive letter"),
        ("alice", "//server/share/x.mp4", "UNC"),
        ("alice", "\\\\server\\share\\x.mp4", "UNC"),
        ("alice", "clips\\a.mp4", "backslash"),
        ("alice", "clips//a.mp4", "empty component"),
        ("alice", "clips/", "empty component"),
        ("alice/", "a.mp4", "empty component"),
        ("alice", "./a.mp4", "'.' component"),
        ("alice", "", "is empty"),
        ("alice", "a" * 256, "longer than 255"),
        ("alice", "/".join(["abcdefgh"] * 600), "longer than 4096"),
    ],
)
def test_rejects_hostile_pieces(
    vast: StorageBackend, user_subdir: str, relative_path: str, fragment: str
) -> None:
    with pytest.raises(PathRejected) as info:
        vast.resolve_path(user_subdir, relative_path)
    assert fragment in info.value.message
    assert info.value.code == "PATH_ERROR"
    assert info.value.hint


def test_rejects_non_string(vast: StorageBackend) -> None:
    with pytest.raises(PathRejected, match="must be a string"):
        vast.resolve_path("alice", 5)  # type: ignore[arg-type]


def test_symlink_escape_rejected(vast: StorageBackend, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.txt").write_text("secret")
    os.symlink(outside, vast.base_path / "alice" / "link")
    with pytest.raises(PathRejected, match="leaves storage backend 'vast'"):
        vast.resolve_path("alice", "link/key.txt")
    # a symlinked file pointing outside is rejected too
    os.symlink(outside / "key.txt", vast.base_path / "alice" / "file-link")
    with pytest.raises(PathRejected):
        vast.resolve_path("alice", "file-link")
    # the user_subdir itself being a symlink out
    os.symlink(outside, vast.base_path / "evil")
    with pytest.raises(PathRejected):
        vast.resolve_path("evil", "key.txt")


def test_symlink_inside_base_allowed(vast: StorageBackend) -> None:
    os.symlink(vast.base_path / "alice" / "clips", vast.base_path / "alice" / "shortcut")
    path = vast.resolve_path("alice", "shortcut/a.mp4")
    assert path.read_bytes() == b"x"


def test_base_path_itself_behind_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "u").mkdir(parents=True)
    link = tmp_path / "mount"
    os.symlink(real, link)
    backend = StorageBackend(name="nfs", base_path=link)
    assert backend.resolve_path("u", "v.mp4") == link / "u" / "v.mp4"


def test_validate_path_rejects_relative(vast: StorageBackend) -> None:
    with pytest.raises(PathRejected, match="not absolute"):
        vast.validate_path("alice/a.mp4")
    assert vast.validate_path(vast.base_path / "alice") == vast.base_path / "alice"


def test_backend_definition_checked(tmp_path: Path) -> None:
    with pytest.raises(PathRejected, match="not absolute"):
        StorageBackend(name="x", base_path=Path("relative/dir"))
    with pytest.raises(PathRejected, match="invalid storage backend name"):
        StorageBackend(name="bad name", base_path=tmp_path)
    with pytest.raises(PathRejected, match="invalid storage backend name"):
        StorageBackend(name="", base_path=tmp_path)
    with pytest.raises(PathRejected):
        StorageBackend(name="x", base_path=tmp_path, user_subdir="../up")


def test_public_info_has_no_path(vast: StorageBackend) -> None:
    assert vast.public_info() == {"name": "vast", "type": "vast"}
    assert str(vast.base_path) not in repr(StorageConfig.of([vast]).public_info())


def test_storage_config_from_toml(tmp_path: Path) -> None:
    cfg = StorageConfig.from_toml(
        {
            "storage": {
                "vast": {"base_path": str(tmp_path / "v"), "type": "vast", "description": "VAST"},
                "nfs": {"base_path": str(tmp_path / "n")},
            }
        },
        env={},
    )
    assert cfg.list_backends() == ["nfs", "vast"]
    assert cfg.has_backend("vast") and not cfg.has_backend("s3")
    assert cfg.backends["nfs"].type == "local"
    assert cfg.resolve_path("vast", "u", "a.mp4") == tmp_path / "v" / "u" / "a.mp4"
    with pytest.raises(UnknownBackend) as info:
        cfg.resolve_path("s3", "u", "a.mp4")
    assert info.value.code == "BACKEND_NOT_AVAILABLE"
    assert "configured: nfs, vast" in info.value.message
    assert "[storage.s3]" in info.value.hint


def test_shared_storage_root_compat(tmp_path: Path) -> None:
    cfg = StorageConfig.from_toml({}, env={"SHARED_STORAGE_ROOT": str(tmp_path)})
    assert cfg.list_backends() == ["default"]
    assert cfg.backends["default"].base_path == tmp_path
    # explicit [storage.*] sections win over the legacy variable
    cfg2 = StorageConfig.from_toml(
        {"storage": {"vast": {"base_path": str(tmp_path)}}}, env={"SHARED_STORAGE_ROOT": "/x"}
    )
    assert cfg2.list_backends() == ["vast"]
    assert StorageConfig.from_toml({}, env={}).list_backends() == []


def test_to_relative_longest_base_wins(tmp_path: Path) -> None:
    outer = StorageBackend(name="outer", base_path=tmp_path / "mnt")
    inner = StorageBackend(name="inner", base_path=tmp_path / "mnt" / "vast")
    resolver = StorageResolver(StorageConfig.of([outer, inner]))
    path = tmp_path / "mnt" / "vast" / "alice" / "clips" / "a.mp4"
    assert resolver.to_relative(path) == ("inner", "alice", "clips/a.mp4")
    assert resolver.to_relative(path, backend="outer") == ("outer", "vast", "alice/clips/a.mp4")
    # a sibling whose name only shares a prefix is not "under" the base
    with pytest.raises(NotUnderAnyBackend):
        resolver.to_relative(tmp_path / "mnt-other" / "a.mp4")
    assert resolver.locate(tmp_path / "elsewhere.mp4") is None
    with pytest.raises(UnknownBackend):
        resolver.to_relative(path, backend="nope")


def test_to_relative_uses_configured_user_subdir(tmp_path: Path) -> None:
    b = StorageBackend(name="lab", base_path=tmp_path, user_subdir="users/alice")
    r = StorageResolver(StorageConfig.of([b]))
    assert r.to_relative(tmp_path / "users" / "alice" / "x" / "v.mp4") == (
        "lab", "users/alice", "x/v.mp4",
    )
    # not under the configured subdir: first directory becomes the user_subdir
    assert r.to_relative(tmp_path / "bob" / "v.mp4") == ("lab", "bob", "v.mp4")
    # directly under the base: empty user_subdir
    assert r.to_relative(tmp_path / "v.mp4") == ("lab", "", "v.mp4")


def test_laptop_and_cluster_mount_same_backend(tmp_path: Path) -> None:
    """Same backend name, different base paths: the triple names the same file on both sides."""
    laptop = StorageResolver(
        StorageConfig.of([StorageBackend(name="vast", base_path=tmp_path / "Volumes" / "vast")])
    )
    cluster = StorageResolver(
        StorageConfig.of([StorageBackend(name="vast", base_path=tmp_path / "mnt" / "vast")])
    )
    triple = laptop.to_relative(tmp_path / "Volumes" / "vast" / "alice" / "lec.mp4")
    assert cluster.resolve(*triple) == tmp_path / "mnt" / "vast" / "alice" / "lec.mp4"


_component = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\\x00"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", "..") and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in s))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=20), min_size=1, max_size=6).map("/".join))
def test_any_accepted_path_stays_inside(raw: str) -> None:
    base = Path("/srv/base")
    backend = StorageBackend(name="b", base_path=base)
    try:
        out = backend.resolve_path("u", raw)
    except PathRejected:
        return
    assert base in out.parents
    assert ".." not in out.relative_to(base).parts


@settings(max_examples=200, deadline=None)
@given(st.lists(_component, min_size=1, max_size=5))
def test_clean_components_roundtrip(parts: list[str]) -> None:
    parts = [p for p in parts if not (len(p) == 2 and p[1] == ":" and p[0].isalpha())]
    if not parts or (len(parts[0]) >= 2 and parts[0][1] == ":" and parts[0][0].isascii()
                     and parts[0][0].isalpha()):
        return
    rel = "/".join(parts)
    assert split_wire_path(rel, what="relative_path", allow_empty=False) == tuple(parts)
