"""Logging set-up. Only the CLI calls :func:`configure`; library code just logs.

Lines are plain ASCII, ``key=value`` context after the message, so they grep well::

    2026-11-21 12:00:00 INFO rtc_annotator.worker job accepted job=3f2a peer=laptop backend=vast
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any


class AsciiFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.encode("ascii", "backslashreplace").decode("ascii")


def configure(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        AsciiFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aioice", "aiortc", "websockets", "asyncio", "aiosqlite", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def kv(context: Mapping[str, Any]) -> str:
    """Render structured context as ``key=value`` pairs (values without spaces)."""
    return " ".join(f"{k}={str(v).replace(' ', '_')}" for k, v in context.items() if v is not None)


class ContextAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger that appends fixed context (job id, peer, backend) to every line."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        extra.update(kwargs.pop("ctx", {}) or {})
        suffix = kv(extra)
        return (f"{msg} {suffix}" if suffix else msg), kwargs


def get_logger(name: str, **context: Any) -> ContextAdapter:
    return ContextAdapter(logging.getLogger(name), context)
