"""A safe parser for users' find text (sans-I/O, pure functions).

Any string is either a valid query or a :class:`QueryError`: the text is reduced to phrases of
letter/digit tokens, so quotes, operators, SQL and FTS syntax carry no meaning. A quoted part
``"gradient descent"`` is a phrase; every other whitespace-separated word is a phrase of its own
tokens (``e-mail`` -> ``e mail``). All phrases must match (AND). The rendered query strings
contain only tokens, spaces and double quotes and are always passed as bound parameters.
"""

from __future__ import annotations

import re

from rtc_annotator.errors import RtcAnnotatorError

MAX_QUERY_CHARS = 500
MAX_PHRASES = 16
_TOKEN = re.compile(r"[^\W_]+")


class QueryError(RtcAnnotatorError):
    """A jump or find request cannot be answered as asked."""

    code = "QUERY_ERROR"


def parse(text: str) -> list[list[str]]:
    """Split ``text`` into phrases of lower-case tokens; raise :class:`QueryError` if empty."""
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"search text is {len(text)} characters long",
                         hint=f"use at most {MAX_QUERY_CHARS} characters")
    phrases: list[list[str]] = []
    for i, part in enumerate(text.split('"')):
        if i % 2 == 1:
            tokens = _TOKEN.findall(part.lower())
            if tokens:
                phrases.append(tokens)
        else:
            for word in part.split():
                tokens = _TOKEN.findall(word.lower())
                if tokens:
                    phrases.append(tokens)
    if not phrases:
        raise QueryError("search text has no words to search for",
                         hint="give at least one word made of letters or digits")
    if len(phrases) > MAX_PHRASES:
        raise QueryError(f"search text has {len(phrases)} terms",
                         hint=f"use at most {MAX_PHRASES} words or quoted phrases")
    return phrases


def to_fts5(phrases: list[list[str]]) -> str:
    """SQLite FTS5 MATCH string: every phrase quoted, joined with AND."""
    return " AND ".join('"' + " ".join(p) + '"' for p in phrases)


def to_websearch(phrases: list[list[str]]) -> str:
    """PostgreSQL ``websearch_to_tsquery`` text: every phrase quoted (implicit AND)."""
    return " ".join('"' + " ".join(p) + '"' for p in phrases)
