"""Log lines: one per event, `timestamp LEVEL logger message key=value`, JSON on demand, and no
secret ever printed, checked on the formatter and on a live daemon's captured output."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import socket
import sqlite3

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from daemon.logs import REDACTED, register_secret, setup_logging
from tests import kit
from tests.daemon_proc import DaemonProc
from tests.test_lifecycle import copy_migrations, migration_file

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARN|ERROR|FATAL) [\w.]+ .+$"
)


@pytest.fixture
def capture():
    stream = io.StringIO()

    def lines(log_format="text"):
        setup_logging(log_format, stream=stream)
        return stream

    yield lines
    setup_logging("text")  # back to stderr for whatever runs next


def test_text_line_has_timestamp_level_logger_message_and_context(capture):
    stream = capture()
    logging.getLogger("keysmith.migrate").warning(
        "self-healed migration %s",
        9,
        extra={"context": {"version": 9, "evidence": "crlf to lf", "backup": None}},
    )
    logging.getLogger("keysmith.boot").info("flat", extra={"port": 8080, "note": 'a "b"\nc'})
    first, second = stream.getvalue().splitlines()
    assert TEXT_LINE.match(first) and TEXT_LINE.match(second)
    assert " WARN keysmith.migrate self-healed migration 9 " in first
    assert first.endswith('version=9 evidence="crlf to lf" backup=null')
    assert second.endswith('port=8080 note="a \\"b\\"\\nc"')  # quoted, still one line


def test_an_exception_stays_on_one_line(capture):
    stream = capture()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logging.getLogger("keysmith.boot").exception("it failed")
    (line,) = stream.getvalue().splitlines()
    assert TEXT_LINE.match(line) and "ValueError: boom" in line and "Traceback" in line


def test_json_mode_writes_one_object_per_line(capture):
    stream = capture("json")
    logging.getLogger("keysmith.migrate").error(
        "refused", extra={"context": {"version": 10, "remedy": "install the previous version"}}
    )
    (line,) = stream.getvalue().splitlines()
    event = json.loads(line)
    assert event["level"] == "ERROR" and event["logger"] == "keysmith.migrate"
    assert event["message"] == "refused" and event["version"] == 10
    assert event["remedy"] == "install the previous version"
    assert re.match(r"^\d{4}-\d\d-\d\dT.*Z$", event["ts"])


def test_secrets_are_masked_by_key_name_and_by_value(capture):
    stream = capture()
    secret = "adm-" + "s3cr3t" * 5
    register_secret(secret)
    log = logging.getLogger("keysmith.test")
    log.info("key is %s", secret)
    log.info("ctx", extra={"admin_api_key": "whatever-value", "private_key": "pem", "ok": 1})
    text = stream.getvalue()
    assert secret not in text and "whatever-value" not in text
    assert f"key is {REDACTED}" in text
    assert f"admin_api_key={REDACTED}" in text and f"private_key={REDACTED}" in text
    assert "ok=1" in text


def _secret_forms(raw: bytes) -> list[str]:
    """The ways a 32-byte Ed25519 private key could be printed: hex, base64, base32, PEM body."""
    pem = (
        Ed25519PrivateKey.from_private_bytes(raw)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    pem_body = "".join(pem.splitlines()[1:-1])
    return [
        raw.hex(),
        base64.b64encode(raw).decode(),
        base64.b32encode(raw).decode().rstrip("="),
        pem_body,
    ]


def test_a_live_daemon_never_logs_its_admin_key_or_private_key(tmp_path):
    # No admin key given: first boot generates one. Then a second boot with a drift heal and a
    # few requests, in JSON mode, so every kind of line the daemon prints is in the capture.
    migrations = copy_migrations(tmp_path)
    with DaemonProc(tmp_path, admin_key=None, migrations_dir=migrations) as first:
        first.wait_for("serving")
        stats = json.loads((first.db_path.parent / "start9" / "stats.yaml").read_text())
        admin_key = stats["data"]["Admin API key"]["value"]
        assert stats["data"]["Admin API key"]["masked"] is True
        first.request("GET", "/v1/admin/licenses", headers={"Authorization": "Bearer wrong"})
        first.request("GET", "/v1/admin/licenses", headers={"Authorization": f"Bearer {admin_key}"})
    drifted = migration_file(migrations, kit.latest_version(migrations))
    drifted.write_bytes(drifted.read_bytes() + b"\n\n")
    with DaemonProc(
        tmp_path, admin_key=None, migrations_dir=migrations, env={"KEYSMITH_LOG_FORMAT": "json"}
    ) as second:
        second.wait_for("serving")
        second.request("POST", "/v1/validate", {"key": "LIC1-AAAA-BBBB"})
        second.request(
            "GET", "/v1/admin/licenses", headers={"Authorization": f"Bearer {admin_key}"}
        )
    events = [json.loads(line) for line in second.log_text().splitlines()]
    heal = [e for e in events if e["level"] == "WARN" and e["logger"] == "keysmith.migrate"]
    assert len(heal) == 1 and "evidence" in heal[0], heal

    conn = sqlite3.connect(second.db_path)
    private_keys = [row[0] for row in conn.execute("SELECT private_key FROM issuer_keys")]
    conn.close()
    logs = first.log_text() + second.log_text()
    assert admin_key not in logs
    for raw in private_keys:
        for form in _secret_forms(bytes(raw)):
            assert form not in logs


def test_a_malformed_request_is_one_info_line_not_an_error_with_a_traceback(tmp_path):
    with DaemonProc(tmp_path) as d:
        with socket.create_connection(("127.0.0.1", d.port), timeout=5) as sock:
            sock.sendall(  # a request smuggling attempt: two different lengths
                b"POST /v1/validate HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello"
            )
            assert b" 400 Bad Request" in sock.recv(200)
        status, _ = d.request("GET", "/healthz")
        assert status == 200
        log_text = d.log_text()
    assert " INFO aiohttp.server refused a malformed request: " in log_text, log_text
    assert "Traceback" not in log_text and " ERROR " not in log_text
