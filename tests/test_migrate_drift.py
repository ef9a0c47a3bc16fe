"""The drift proofs accept exactly the cosmetic changes and nothing that could change meaning."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from daemon.migrate.drift import BOM, prove_comments_only, prove_cosmetic
from daemon.migrate.sqltext import normalized_sha384, statements

sha384 = lambda data: hashlib.sha384(data).digest()  # noqa: E731

# Lines of SQL-ish text: no line-ending characters, no leading BOM, no trailing whitespace.
line = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\ufeff"),
    max_size=40,
).map(lambda s: s.rstrip(" \t"))
script = (
    st.lists(line, min_size=1, max_size=8)
    .filter(lambda lines: lines[-1] != "")
    .map(lambda lines: "\n".join(lines) + "\n")
)


@st.composite
def cosmetic_pair(draw):
    """(applied bytes, today's bytes) that differ only in the ways builds and editors drift."""
    base = draw(script).encode()
    applied = base.replace(b"\n", b"\r\n") if draw(st.booleans()) else base
    applied = BOM + applied if draw(st.booleans()) else applied
    today = applied
    if draw(st.booleans()):  # a checkout with the other line-ending convention
        today = today.replace(b"\r\n", b"\n") if b"\r\n" in today else today.replace(b"\n", b"\r\n")
    if draw(st.booleans()):  # an editor that adds or drops the BOM
        today = today.removeprefix(BOM) if today.startswith(BOM) else BOM + today
    if draw(st.booleans()):  # an editor that leaves trailing blanks
        newline = b"\r\n" if b"\r\n" in today else b"\n"
        today = today.replace(newline, b"  " + newline)
    today = today.rstrip(b"\r\n") + draw(st.sampled_from([b"", b"\n", b"\n\n", b"\r\n"]))
    return applied, today


@given(cosmetic_pair())
def test_every_cosmetic_drift_is_proven(pair):
    applied, today = pair
    if applied != today:
        assert prove_cosmetic(today, sha384(applied)) is not None


@given(cosmetic_pair())
def test_checksums_recorded_with_sqlx_ignored_chars_are_proven(pair):
    applied, today = pair
    recorded = sha384(applied.replace(b"\r", b""))
    if recorded != sha384(today):
        assert prove_cosmetic(today, recorded) is not None


@given(script, st.data())
def test_a_changed_character_is_never_cosmetic(text, data):
    applied = text.encode()
    meaningful = [i for i, ch in enumerate(text) if not ch.isspace()]
    if not meaningful:
        return
    i = data.draw(st.sampled_from(meaningful))
    replacement = data.draw(st.characters(blacklist_categories=("Cs",)).filter(str.isalnum))
    if replacement == text[i]:
        return
    today = (text[:i] + replacement + text[i + 1 :]).encode()
    assert prove_cosmetic(today, sha384(applied)) is None


def test_identical_bytes_are_not_drift():
    data = b"SELECT 1;\n"
    assert prove_cosmetic(data, sha384(data)) is None


def test_evidence_names_the_smallest_explanation():
    applied = b"ALTER TABLE t ADD COLUMN c INTEGER;\r\n"
    assert prove_cosmetic(applied.replace(b"\r\n", b"\n"), sha384(applied)) == (
        "cosmetic: line endings (applied CRLF, now LF)"
    )


APPLIED = """-- Prices in minor units.
ALTER TABLE products ADD COLUMN price_minor INTEGER NOT NULL DEFAULT 0;
UPDATE products SET price_minor = price_sats WHERE note = 'keep  two spaces';
"""


def _prove(today: str) -> str | None:
    applied = APPLIED.encode()
    return prove_comments_only(today, applied, sha384(applied))


def test_comment_and_whitespace_edits_are_proven_from_the_applied_text():
    today = APPLIED.replace("-- Prices in minor units.", "/* Prices,\n   in minor units. */")
    today = today.replace("UPDATE products SET", "UPDATE products\n    SET") + "-- end\n"
    assert _prove(today) is not None


def test_a_change_inside_a_string_literal_is_not_a_whitespace_edit():
    assert _prove(APPLIED.replace("'keep  two spaces'", "'keep two spaces'")) is None
    assert _prove(APPLIED.replace("'keep  two spaces'", "'keep  two spaces -- x'")) is None


def test_a_keyword_or_value_change_is_not_a_comment_edit():
    assert _prove(APPLIED.replace("DEFAULT 0", "DEFAULT 1")) is None
    assert _prove(APPLIED.replace("UPDATE", "update")) is None


def test_provenance_that_does_not_match_the_ledger_proves_nothing():
    applied = APPLIED.encode()
    assert prove_comments_only(APPLIED, applied, sha384(b"other")) is None


def test_joining_tokens_is_a_change_even_without_new_characters():
    assert normalized_sha384("SELECT a b FROM t") != normalized_sha384("SELECT ab FROM t")
    assert normalized_sha384("SELECT x'00'") != normalized_sha384("SELECT x '00'")
    assert normalized_sha384("a <= b") != normalized_sha384("a < = b")


@given(st.lists(st.sampled_from(["SELECT 1", "SELECT 'a;b'", 'SELECT "c;"', "SELECT 2 /* ; */"])))
def test_statements_split_only_at_real_statement_ends(parts):
    text = ";\n".join(parts) + (";" if parts else "")
    assert len(statements(text)) == len(parts)


def test_a_trigger_body_stays_one_statement():
    sql = (
        "CREATE TABLE t (x);\n"
        "CREATE TRIGGER t_ai AFTER INSERT ON t BEGIN UPDATE t SET x = 1; SELECT 2; END;\n"
        "/* trailing ; comment */"
    )
    assert len(statements(sql)) == 2
