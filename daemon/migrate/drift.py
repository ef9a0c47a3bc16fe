"""Proofs that a changed migration file still means what was applied.

A mismatch is cosmetic only when some variant of today's bytes hashes to *exactly* the checksum
recorded at apply time. The variants undo the drift that builds and editors introduce without
changing meaning: line endings, a BOM, trailing whitespace, final newlines, and the hash inputs a
sqlx 0.9 daemon with `ignored-chars` would have recorded. Simplest combinations are tried first,
so the evidence names the smallest explanation.

The third (prove_released_comments_only) stands in for the second when no text was kept: the
applied checksum names a released text in history.lock, whose token hash is compared instead.

The second proof needs the text that was applied (kept in our provenance table): if it and
today's text have the same tokens outside comments and whitespace, the change is comment- or
whitespace-only, which no tokenizer-visible meaning can hide in (string literals are whole tokens).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator

from daemon.migrate.sqltext import normalized_sha384

TYPE_CHECKING = False
if TYPE_CHECKING:
    from daemon.migrate.history import Released

BOM = b"\xef\xbb\xbf"
_WHITESPACE = (b" ", b"\t", b"\n", b"\r")
Transform = tuple[str, Callable[[bytes], bytes]]


def _to_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def _to_crlf(data: bytes) -> bytes:
    return _to_lf(data).replace(b"\n", b"\r\n")


def _newline_of(data: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in data else b"\n"


def _strip_line_ends(data: bytes) -> bytes:
    lines = data.split(b"\n")
    return b"\n".join(
        line.rstrip(b" \t\r") + (b"\r" if line.endswith(b"\r") else b"") for line in lines
    )


def _without_final_newlines(data: bytes) -> bytes:
    return data.rstrip(b"\r\n")


def _remove(chars: tuple[bytes, ...]) -> Callable[[bytes], bytes]:
    def remove(data: bytes) -> bytes:
        for char in chars:
            data = data.replace(char, b"")
        return data

    return remove


def _final_newlines(count: int) -> Callable[[bytes], bytes]:
    def exactly(data: bytes) -> bytes:
        return _without_final_newlines(data) + _newline_of(data) * count

    return exactly


# Applied in this order; each axis starts with its identity; a name says how the applied file
# differed. Final newlines come before line endings so an added newline gets converted too.
_AXES: tuple[tuple[Transform, ...], ...] = (
    (("", bytes), *((f"final newlines ({n})", _final_newlines(n)) for n in range(4))),
    (
        ("", bytes),
        ("line endings (applied LF, now CRLF)", _to_lf),
        ("line endings (applied CRLF, now LF)", _to_crlf),
    ),
    (
        ("", bytes),
        ("byte-order mark (applied without, now with)", lambda d: d.removeprefix(BOM)),
        ("byte-order mark (applied with, now without)", lambda d: BOM + d.removeprefix(BOM)),
    ),
    (("", bytes), ("trailing whitespace at line ends", _strip_line_ends)),
    (
        ("", bytes),
        ("recorded by sqlx 0.9 with ignored-chars [\\r]", _remove((b"\r",))),
        ("recorded by sqlx 0.9 with ignored-chars [whitespace]", _remove(_WHITESPACE)),
        ("recorded by sqlx 0.9 with ignored-chars [whitespace, BOM]", _remove((*_WHITESPACE, BOM))),
    ),
)
# Past this size only combinations of two transforms are tried, to bound the hashing work.
_LARGE_FILE = 4 * 1024 * 1024


def _simplicity(combo: tuple[Transform, ...]) -> tuple[int, tuple[int, ...]]:
    """Fewest transforms first; among equals, the earlier (more common) axes first."""
    used = tuple(axis for axis, (name, _) in enumerate(combo) if name)
    return len(used), used


def _variants(today: bytes) -> Iterator[tuple[str, bytes]]:
    seen: set[bytes] = set()
    most = 2 if len(today) > _LARGE_FILE else len(_AXES)
    for combo in sorted(itertools.product(*_AXES), key=_simplicity):
        if _simplicity(combo)[0] > most:
            break
        data = today
        for _name, transform in combo:
            data = transform(data)
        if data in seen:
            continue
        seen.add(data)
        yield " + ".join(name for name, _ in combo if name), data


def prove_cosmetic(today: bytes, recorded_checksum: bytes) -> str | None:
    """The evidence (which cosmetic differences) if a variant of `today` hashes to the recorded
    checksum, else None. Identical bytes are not drift and return None."""
    for evidence, data in _variants(today):
        if evidence and hashlib.sha384(data).digest() == recorded_checksum:
            return f"cosmetic: {evidence}"
    return None


def prove_comments_only(
    today_text: str, applied_sql: bytes, recorded_checksum: bytes
) -> str | None:
    """Evidence if the stored applied text is authentic for the recorded checksum and differs
    from today's text only in comments and whitespace outside literals. The applied text's token
    hash is computed here, from the authenticated bytes, not read from the provenance row."""
    if hashlib.sha384(applied_sql).digest() != recorded_checksum:
        return None
    try:
        applied_text = applied_sql.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if normalized_sha384(today_text) != normalized_sha384(applied_text):
        return None
    return "comments/whitespace only (compared with the applied text kept in provenance)"


def prove_released_comments_only(today_text: str, released: Released) -> str | None:
    """Evidence if the text applied (known by its checksum to be a released one) has the same
    tokens as today's: the third proof, for a ledger that kept no applied text."""
    if normalized_sha384(today_text) != released.tokens_sha384:
        return None
    from daemon.migrate.history import release_name

    return (
        f"comments/whitespace only (the applied checksum is {release_name(released)} in the "
        "history lock, and its tokens equal today's)"
    )
