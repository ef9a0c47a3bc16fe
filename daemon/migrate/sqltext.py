"""A small SQLite tokenizer: enough to split a script into statements and to compare two scripts
up to comments and whitespace, while never looking inside string literals or quoted names.

Why not `executescript()`: it COMMITs any open transaction before it runs, so a migration could
never share one transaction with its ledger row. We execute statement by statement instead, and
`sqlite3.complete_statement` tells where a statement really ends (a `;` inside a CREATE TRIGGER
body does not end it).

Both functions let the regex engine do the scanning (`findall` / `finditer` over the few tokens
that matter), because a Python-level loop over every token costs more than the SQL it splits.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3

# Every meaningful token, captured; whitespace (a BOM included) and comments are matched but not
# captured, so `findall` returns "" for them and the filter below drops them in C. Order
# matters: comments and quoted tokens first, so their contents are never re-tokenized.
_TOKEN = re.compile(
    r"""
      [\s\ufeff]+ | --[^\n]* | /\*.*?(?:\*/|\Z)
    | ( [xX]'[0-9A-Fa-f]*'
      | '(?:[^']|'')*(?:'|\Z)
      | "(?:[^"]|"")*(?:"|\Z) | `(?:[^`]|``)*(?:`|\Z) | \[[^\]]*(?:\]|\Z)
      | (?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)? | 0[xX][0-9A-Fa-f]+
      | [\w$]+
      | ->> | -> | <= | >= | <> | != | == | \|\| | << | >> | . )
    """,
    re.VERBOSE | re.DOTALL,
)
# Only what can hide a `;`, and the `;` itself: plain SQL between them is skipped in C.
_BOUNDARY = re.compile(
    r"""
      (?P<comment>--[^\n]* | /\*.*?(?:\*/|\Z))
    | (?P<quoted>'(?:[^']|'')*(?:'|\Z) | "(?:[^"]|"")*(?:"|\Z) | `(?:[^`]|``)*(?:`|\Z)
                 | \[[^\]]*(?:\]|\Z))
    | (?P<end>;)
    """,
    re.VERBOSE | re.DOTALL,
)


def statements(sql: str) -> list[str]:
    """Split a script into complete statements, dropping pieces that hold only comments."""
    sql = sql.removeprefix("\ufeff")  # a byte-order mark is not SQL
    found: list[str] = []
    start = gap = 0  # where the statement began; where the last comment or literal ended
    meaningful = False
    for match in _BOUNDARY.finditer(sql):
        meaningful = meaningful or bool(sql[gap : match.start()].strip())
        gap = match.end()
        if match.lastgroup == "quoted":
            meaningful = True
        elif match.lastgroup == "end" and sqlite3.complete_statement(sql[start:gap]):
            if meaningful:
                found.append(sql[start:gap].strip())
            start, meaningful = gap, False
    if meaningful or sql[gap:].strip():
        found.append(sql[start:].strip())
    return found


def normalized_sha384(sql: str) -> bytes:
    """Hash of the script's meaningful tokens: equal for scripts that differ only in comments and
    whitespace outside literals. The token list is JSON-encoded, so boundaries cannot blur."""
    meaningful = list(filter(None, _TOKEN.findall(sql)))
    return hashlib.sha384(json.dumps(meaningful).encode("utf-8")).digest()
