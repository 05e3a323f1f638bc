"""The project's one exception tree and its one error envelope.

Every error a user, a config file or a peer can cause derives from :class:`RtcAnnotatorError`
and carries a stable ``code``, a one-line ``message`` and a ``hint`` that says how to fix it.
Internal details (tracebacks, local paths of the other side) go to the log, never to a peer.

Tree::

    RtcAnnotatorError
    +-- ConfigError                  bad or unreadable configuration          CONFIG_ERROR
    +-- StorageError
    |   +-- PathRejected             hostile or malformed path pieces         PATH_ERROR
    |   +-- UnknownBackend           backend not configured on this side      BACKEND_NOT_AVAILABLE
    |   +-- NotUnderAnyBackend       absolute path outside every backend      NOT_UNDER_BACKEND
    +-- ProtocolError                malformed or unexpected message          PROTOCOL_ERROR

Later modules add their own subclasses under this root and list them in their docstrings.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorEnvelope(BaseModel):
    """The single error shape sent to peers, API callers and ``--json`` CLI output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(description="Stable machine-readable error code, e.g. PATH_ERROR.")
    message: str = Field(description="One line saying what was wrong.")
    hint: str = Field(default="", description="One line saying how to fix it.")


class RtcAnnotatorError(Exception):
    """Base of every error the project raises on purpose."""

    code: str = "INTERNAL_ERROR"
    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint
        if code is not None:
            self.code = code

    def envelope(self) -> ErrorEnvelope:
        return ErrorEnvelope(code=self.code, message=self.message, hint=self.hint)

    def one_line(self) -> str:
        """``message (hint)`` on one line, as the CLI prints it."""
        text = self.message.replace("\n", " ")
        if self.hint:
            return f"{text} -- {self.hint}"
        return text

    def __str__(self) -> str:
        return self.one_line()

    def to_dict(self) -> dict[str, Any]:
        return self.envelope().model_dump()


class ConfigError(RtcAnnotatorError):
    """The configuration file or environment is invalid or unreadable."""

    code = "CONFIG_ERROR"


class StorageError(RtcAnnotatorError):
    """A storage-backend operation failed."""

    code = "STORAGE_ERROR"


class PathRejected(StorageError):
    """A path piece from a user or a peer was malformed or would leave the base path."""

    code = "PATH_ERROR"
    default_hint = "send a relative path with '/' separators that stays inside the backend"


class UnknownBackend(StorageError):
    """The named storage backend is not configured on this side."""

    code = "BACKEND_NOT_AVAILABLE"


class NotUnderAnyBackend(StorageError):
    """An absolute path lies outside every configured backend's base path."""

    code = "NOT_UNDER_BACKEND"
    default_hint = "add a [storage.<name>] section whose base_path contains the file, or send it"


class ProtocolError(RtcAnnotatorError):
    """A message was malformed, unknown or not allowed in the current state."""

    code = "PROTOCOL_ERROR"
