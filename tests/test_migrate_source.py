"""Source discovery behaves exactly like sqlx's resolver, and every unusable folder is reported
with the file's name, never a traceback."""

from __future__ import annotations

import hashlib
import os

import pytest

from daemon.migrate import SourceError
from daemon.migrate.source import load_source
from tests import migfiles


def test_names_versions_and_descriptions_follow_sqlx(tmp_path):
    folder = migfiles.write(
        tmp_path / "m",
        {
            "0009_discount_codes_set_price.sql": "SELECT 1;",
            "0002_add_things.up.sql": "SELECT 2;",
            "0002_add_things.down.sql": "SELECT 'down';",
            "0_zero.sql": "SELECT 0;",
            "-5_negative.sql": "SELECT -5;",
            "0011_add foo.sql": "SELECT 11;",
        },
    )
    found = {m.version: m.description for m in load_source(folder)}
    assert found == {
        -5: "negative",
        0: "zero",
        2: "add things",
        9: "discount codes set price",
        11: "add foo",
    }


def test_checksum_is_sha384_of_the_exact_bytes_bom_and_crlf_included(tmp_path):
    raw = b"\xef\xbb\xbfCREATE TABLE t (x);\r\n\r\n"
    folder = migfiles.write(tmp_path / "m", {"0001_t.sql": raw})
    (migration,) = load_source(folder)
    assert migration.checksum == hashlib.sha384(raw).digest()
    assert len(migration.checksum) == 48


def test_files_sqlx_skips_are_skipped(tmp_path):
    folder = migfiles.write(
        tmp_path / "m",
        {
            "README.md": "# notes",
            ".gitkeep": "",
            "0001_a.sql~": "backup",
            "0001_a.SQL": "upper case suffix",
            "notes.sql": "no underscore",
            "0001_a.sql": "SELECT 1;",
        },
    )
    (folder / "0002_subdir.sql").mkdir()
    (folder / "0003_nested").mkdir()
    (folder / "0003_nested" / "0004_inner.sql").write_text("SELECT 4;")
    assert [m.version for m in load_source(folder)] == [1]


def test_an_empty_file_is_a_migration_that_does_nothing(tmp_path):
    folder = migfiles.write(tmp_path / "m", {"0001_empty.sql": ""})
    (migration,) = load_source(folder)
    assert migration.sql_bytes == b""


@pytest.mark.parametrize(
    "name",
    [
        "abc_create.sql",
        "1a_create.sql",
        " 1_create.sql",
        "_create.sql",
        "9223372036854775808_x.sql",
    ],
)
def test_a_bad_version_prefix_names_the_file(tmp_path, name):
    folder = migfiles.write(tmp_path / "m", {name: "SELECT 1;"})
    with pytest.raises(SourceError) as error:
        load_source(folder)
    assert f'"{name}"' in str(error.value)
    assert "expected integer version prefix" in str(error.value)


def test_duplicate_versions_name_both_files(tmp_path):
    folder = migfiles.write(tmp_path / "m", {"0003_a.sql": "SELECT 1;", "3_b.up.sql": "SELECT 2;"})
    with pytest.raises(SourceError) as error:
        load_source(folder)
    assert "duplicate version 3" in str(error.value)
    assert "0003_a.sql" in str(error.value) and "3_b.up.sql" in str(error.value)


def test_invalid_utf8_names_the_file_and_the_offset(tmp_path):
    folder = migfiles.write(tmp_path / "m", {"0001_latin1.sql": b"SELECT 'caf\xe9';"})
    with pytest.raises(SourceError) as error:
        load_source(folder)
    message = str(error.value)
    assert "0001_latin1.sql" in message and "not valid UTF-8" in message and "offset 11" in message


def test_a_symlinked_migration_is_read_and_a_link_loop_is_reported(tmp_path):
    folder = migfiles.write(tmp_path / "m", {})
    (tmp_path / "real.sql").write_text("SELECT 1;")
    os.symlink(tmp_path / "real.sql", folder / "0001_linked.sql")
    assert [m.version for m in load_source(folder)] == [1]
    os.symlink(folder / "0002_loop.sql", folder / "0002_loop.sql")
    with pytest.raises(SourceError) as error:
        load_source(folder)
    assert "0002_loop.sql" in str(error.value) and "link cannot be followed" in str(error.value)


def test_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError) as error:
        load_source(tmp_path / "nowhere")
    assert "nowhere" in str(error.value) and "cannot list the folder" in str(error.value)


def test_no_transaction_only_when_it_is_the_very_first_bytes(tmp_path):
    folder = migfiles.write(
        tmp_path / "m",
        {
            "0001_a.sql": "-- no-transaction\nVACUUM;",
            "0002_b.sql": "\n-- no-transaction\nVACUUM;",
            "0003_c.sql": b"\xef\xbb\xbf-- no-transaction\nVACUUM;",
        },
    )
    assert [m.no_transaction for m in load_source(folder)] == [True, False, False]
