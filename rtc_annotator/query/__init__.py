"""Jump (next/previous artifact of a kind) and find (full-text next/previous)."""

from rtc_annotator.query.navigate import KINDS, FindHit, artifact_type_for, find, jump
from rtc_annotator.query.text import QueryError, parse

__all__ = ["KINDS", "FindHit", "QueryError", "artifact_type_for", "find", "jump", "parse"]
