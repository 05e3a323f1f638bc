"""Logging set-up. Only the command lines (and the worker's job processes) call
:func:`configure`; library code just logs.

Two formats. ``text`` (the default): plain ASCII lines, ``key=value`` context after the message,
so they grep well::

    2026-11-21 12:00:00 INFO rtc_annotator.worker job accepted job=3f2a peer=laptop backend=vast

``json``: one JSON object per line for cluster log collectors, the context as fields::

    {"ts": "2026-11-21T12:00:00.123Z", "level": "INFO", "logger": "rtc_annotator.worker",
     "msg": "job accepted", "job": "3f2a", "peer": "laptop", "backend": "vast"}

``RTC_ANNOTATOR_LOG_LEVEL`` and ``RTC_ANNOTATOR_LOG_FORMAT`` give the defaults of
``--log-level`` / ``--log-format``. Either way URL passwords and registered secrets are
replaced by ``***`` (:mod:`rtc_annotator.redact`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from rtc_annotator.redact import mask

LEVEL_ENV = "RTC_ANNOTATOR_LOG_LEVEL"
FORMAT_ENV = "RTC_ANNOTATOR_LOG_FORMAT"
FORMATS = ("text", "json")

_CTX = "rtc_ctx"
_SUFFIX = "rtc_suffix"


class AsciiFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = mask(super().format(record))
        return text.encode("ascii", "backslashreplace").decode("ascii")


class JsonFormatter(logging.Formatter):
    """One JSON object per record; context from :class:`ContextAdapter` becomes fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        suffix = getattr(record, _SUFFIX, "")
        if suffix and message.endswith(" " + suffix):
            message = message[: -len(suffix) - 1]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": mask(message),
        }
        for key, value in (getattr(record, _CTX, None) or {}).items():
            if value is not None and key not in out:
                out[key] = value if isinstance(value, int | float | bool) else mask(str(value))
        if record.exc_info:
            out["exc"] = mask(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=True, default=str)


def configure(level: str | None = None, stream: Any = None, *, fmt: str | None = None) -> None:
    """Send every log record to ``stream`` (stderr) at ``level``, as ``fmt`` (text or json).

    A missing level or format comes from $RTC_ANNOTATOR_LOG_LEVEL / $RTC_ANNOTATOR_LOG_FORMAT,
    else INFO and text."""
    level = level or os.environ.get(LEVEL_ENV) or "INFO"
    fmt = fmt or os.environ.get(FORMAT_ENV) or "text"
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: use text or json")
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter: logging.Formatter = (
        JsonFormatter() if fmt == "json" else
        AsciiFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setFormatter(formatter)
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
        kwargs["extra"] = {**(kwargs.get("extra") or {}), _CTX: extra, _SUFFIX: suffix}
        return (f"{msg} {suffix}" if suffix else msg), kwargs


def get_logger(name: str, **context: Any) -> ContextAdapter:
    return ContextAdapter(logging.getLogger(name), context)
