"""Room state that survives a restart: rooms, routing policies, revoked tokens, the signing key.

Kept in a small SQLite file (stdlib ``sqlite3``), written from a worker thread so the event loop
never blocks; everything is also held in memory, so reads (every ``hello``) touch no disk.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rtc_annotator.logs import get_logger
from rtc_annotator.protocol.signaling import RoutingPolicy

log = get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (
    name TEXT PRIMARY KEY, created_at REAL NOT NULL, policy TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked (
    jti TEXT PRIMARY KEY, room TEXT NOT NULL, revoked_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS issued (
    jti TEXT PRIMARY KEY, room TEXT NOT NULL, role TEXT NOT NULL, issued_at REAL NOT NULL,
    expires_at REAL NOT NULL, label TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drained (
    room TEXT NOT NULL, worker TEXT NOT NULL, PRIMARY KEY (room, worker)
);
"""


@dataclass
class Room:
    """One room (a lab)."""

    name: str
    created_at: float
    policy: RoutingPolicy = field(default_factory=RoutingPolicy)
    drained: set[str] = field(default_factory=set)
    """Workers the admin drained (kept across restarts and re-registrations)."""


class RoomStore:
    """Rooms, policies, revocations and the token signing key, persisted in SQLite."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.rooms: dict[str, Room] = {}
        self.revoked: set[str] = set()
        self.issued: dict[str, str] = {}
        """Token id -> room, for every token this server issued."""
        self.signing_key: bytes = b""

    # ---- sync part (runs in a thread)

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='signing_key'").fetchone()
        if row is None:
            key = secrets.token_hex(32)
            db.execute("INSERT INTO meta(key, value) VALUES ('signing_key', ?)", (key,))
        else:
            key = row[0]
        self.signing_key = bytes.fromhex(key)
        for name, created, policy in db.execute("SELECT name, created_at, policy FROM rooms"):
            self.rooms[name] = Room(name, created, RoutingPolicy.model_validate_json(policy))
        for room, worker in db.execute("SELECT room, worker FROM drained"):
            if room in self.rooms:
                self.rooms[room].drained.add(worker)
        self.revoked = {r[0] for r in db.execute("SELECT jti FROM revoked")}
        self.issued = dict(db.execute("SELECT jti, room FROM issued").fetchall())
        self._db = db

    def _exec(self, sql: str, args: tuple[object, ...]) -> None:
        with self._lock:
            assert self._db is not None
            self._db.execute(sql, args)

    async def _write(self, sql: str, *args: object) -> None:
        await asyncio.to_thread(self._exec, sql, args)

    # ---- async API

    async def open(self) -> None:
        await asyncio.to_thread(self._open)
        log.info("room store open", ctx={"path": self.path, "rooms": len(self.rooms)})

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await asyncio.to_thread(db.close)

    async def create_room(self, name: str) -> Room | None:
        """Create a room; None when it exists already."""
        if name in self.rooms:
            return None
        room = Room(name, time.time())
        self.rooms[name] = room
        await self._write("INSERT INTO rooms(name, created_at, policy) VALUES (?, ?, ?)",
                          name, room.created_at, room.policy.model_dump_json())
        return room

    async def set_policy(self, name: str, policy: RoutingPolicy) -> None:
        self.rooms[name].policy = policy
        await self._write("UPDATE rooms SET policy=? WHERE name=?", policy.model_dump_json(), name)

    async def record_issue(self, jti: str, room: str, role: str, issued_at: float,
                           expires_at: float, label: str) -> None:
        self.issued[jti] = room
        await self._write("INSERT INTO issued(jti, room, role, issued_at, expires_at, label) "
                          "VALUES (?, ?, ?, ?, ?, ?)", jti, room, role, issued_at, expires_at,
                          label)

    async def revoke(self, room: str, jti: str) -> None:
        self.revoked.add(jti)
        await self._write("INSERT OR IGNORE INTO revoked(jti, room, revoked_at) VALUES (?, ?, ?)",
                          jti, room, time.time())

    async def set_drained(self, room: str, worker: str, drained: bool) -> None:
        if drained:
            self.rooms[room].drained.add(worker)
            await self._write("INSERT OR IGNORE INTO drained(room, worker) VALUES (?, ?)",
                              room, worker)
        else:
            self.rooms[room].drained.discard(worker)
            await self._write("DELETE FROM drained WHERE room=? AND worker=?", room, worker)
