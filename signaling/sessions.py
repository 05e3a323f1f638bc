"""Sessions: one client paired with one worker, holding one of the worker's slots.

Members are identities (``worker:<name>``, ``client:<name>``), not connections, so a session
survives a member's reconnect. The server relays signals only between the two members.
"""

from __future__ import annotations

import enum
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from rtc_annotator.logs import get_logger

log = get_logger(__name__)


class SessionState(enum.Enum):
    ACTIVE = "active"
    ENDED = "ended"


@dataclass
class Session:
    """One pairing."""

    id: str
    room: str
    worker: str
    """Worker name."""
    client: str
    """Client identity (``client:<name>`` or ``admin:<name>``)."""
    route_id: str
    created_at: float = field(default_factory=time.time)
    state: SessionState = SessionState.ACTIVE
    end_reason: str = ""
    routed: dict[str, Any] | None = None
    """The ``routed`` reply, answered again when the client retries the same route id."""

    @property
    def worker_identity(self) -> str:
        return f"worker:{self.worker}"

    def members(self) -> tuple[str, str]:
        return (self.worker_identity, self.client)

    def other(self, identity: str) -> str | None:
        if identity == self.client:
            return self.worker_identity
        if identity == self.worker_identity:
            return self.client
        return None

    def set_state(self, state: SessionState, reason: str = "") -> None:
        if self.state is SessionState.ENDED:
            raise RuntimeError(f"session {self.id} already ended")
        log.info("session state", ctx={"session": self.id, "room": self.room,
                                       "from": self.state.value, "to": state.value,
                                       "reason": reason or None})
        self.state = state
        self.end_reason = reason


class SessionTable:
    """Active sessions, indexed by id and by member."""

    def __init__(self) -> None:
        self.by_id: dict[str, Session] = {}
        self.by_member: dict[tuple[str, str], set[str]] = {}

    def open(self, room: str, worker: str, client: str, route_id: str) -> Session:
        s = Session(id=secrets.token_hex(8), room=room, worker=worker, client=client,
                    route_id=route_id)
        self.by_id[s.id] = s
        for m in s.members():
            self.by_member.setdefault((room, m), set()).add(s.id)
        return s

    def get(self, room: str, session_id: str) -> Session | None:
        s = self.by_id.get(session_id)
        return s if s is not None and s.room == room else None

    def of(self, room: str, identity: str) -> list[Session]:
        return [self.by_id[i] for i in sorted(self.by_member.get((room, identity), ()))]

    def end(self, s: Session, reason: str) -> None:
        s.set_state(SessionState.ENDED, reason)
        self.by_id.pop(s.id, None)
        for m in s.members():
            ids = self.by_member.get((s.room, m))
            if ids is not None:
                ids.discard(s.id)
                if not ids:
                    del self.by_member[(s.room, m)]

    def __len__(self) -> int:
        return len(self.by_id)
