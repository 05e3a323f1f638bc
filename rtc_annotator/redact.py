"""Hide credentials in anything shown to a person or written to a log.

Two kinds of secret are hidden:

* the password of a URL (``postgresql://u:secret@h/db`` becomes ``postgresql://u:***@h/db``),
  wherever such a URL appears in a text;
* values registered with :func:`register_secret` (the signaling token, the admin and TURN
  secrets, ICE credentials): every occurrence in a text becomes ``***``.

:func:`mask` does both; the log formatter (:mod:`rtc_annotator.logs`), ``fail()`` of the command
line and ``config show`` run everything through it.
"""

from __future__ import annotations

import re
import threading

MASK = "***"

# scheme://user:password@  -- the password stops at the first '@', '/' or whitespace
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@]*:)[^\s/@]*(?=@)")
# ?password=...&token=... in a URL query (or key=value log context)
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&](?:password|passwd|token|secret|credential|key)=)[^&\s#]+", re.IGNORECASE
)

_MIN_SECRET_LEN = 4
"""Shorter values are not registered: masking every 'abc' in a log would garble it."""

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Hide ``value`` in everything :func:`mask` sees from now on (process-wide)."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)


def forget_secrets() -> None:
    """Drop every registered secret (tests)."""
    with _lock:
        _secrets.clear()


def mask_url(url: str) -> str:
    """``url`` with the password of its user info and secret query values replaced by ``***``."""
    url = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, url)
    return _QUERY_SECRET.sub(lambda m: m.group("head") + MASK, url)


def mask(text: str) -> str:
    """``text`` with URL passwords and every registered secret replaced by ``***``."""
    text = mask_url(text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
