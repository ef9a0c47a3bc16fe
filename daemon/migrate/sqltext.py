"""A small SQLite tokenizer: enough to split a script into statements and to compare two scripts
up to comments and whitespace, while never looking inside string literals or quoted names.

Why not `executescript()`: it COMMITs any open transaction before it runs, so a migration could
never share one transaction with its ledger row. We execute statement by statement instead, and
`sqlite3.complete_statement` tells where a statement really ends (a `;` inside a CREATE TRIGGER
body does not end it).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator

# Order matters: comments and quoted tokens first, so their contents are never re-tokenized.
_TOKEN = re.compile(
    r"""
      (?P<space>[\s\ufeff]+)
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<blob>[xX]'[0-9A-Fa-f]*')
    | (?P<string>'(?:[^']|'')*(?:'|\Z))
    | (?P<quoted>"(?:[^"]|"")*(?:"|\Z)|`(?:[^`]|``)*(?:`|\Z)|\[[^\]]*(?:\]|\Z))
    | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9A-Fa-f]+)
    | (?P<word>[\w$]+)
    | (?P<op>->>|->|<=|>=|<>|!=|==|\|\||<<|>>|.)
    """,
    re.VERBOSE | re.DOTALL,
)
_INVISIBLE = ("space", "comment")


def tokens(sql: str) -> Iterator[tuple[str, str, int]]:
    """(kind, text, end offset) for every token of `sql`, comments and whitespace included."""
    for match in _TOKEN.finditer(sql):
        yield match.lastgroup or "op", match.group(), match.end()


def statements(sql: str) -> list[str]:
    """Split a script into complete statements, dropping pieces that hold only comments."""
    found: list[str] = []
    start = 0
    meaningful = False
    for kind, text, end in tokens(sql):
        if kind in _INVISIBLE:
            continue
        if text == ";":
            candidate = sql[start:end]
            if sqlite3.complete_statement(candidate):
                if meaningful:
                    found.append(candidate.strip())
                start, meaningful = end, False
            continue
        meaningful = True
    if meaningful:
        found.append(sql[start:].strip())
    return found


def normalized_sha384(sql: str) -> bytes:
    """Hash of the script's meaningful tokens: equal for scripts that differ only in comments and
    whitespace outside literals. Length-prefixed so token boundaries cannot be forged."""
    digest = hashlib.sha384()
    for kind, text, _end in tokens(sql):
        if kind not in _INVISIBLE:
            raw = text.encode("utf-8")
            digest.update(len(raw).to_bytes(8, "big") + raw)
    return digest.digest()
