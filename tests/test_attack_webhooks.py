"""Hostile clients against webhooks (issue 20, item 7), on the real daemon and real sockets.

Whoever may create a webhook endpoint chooses where the daemon posts: without a rule, that
made the daemon a client inside the seller's own network (endpoints at 127.0.0.1, localhost,
0.0.0.0 and [::ffff:127.0.0.1] were delivered to; 169.254.169.254, the cloud metadata
service, was accepted). Whoever may read the delivery log (a read-only key) learned what
answered: the first 200 characters of a failed answer (`HTTP 500: INTERNAL-SECRET:
root-token=…`), and connection errors that told an open port from a closed one. Now private
destinations are refused unless the operator allows their network, when an endpoint is
created and again at every attempt, on the address actually connected to; the log keeps a
status and its standard phrase only, and every connection failure reads the same.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from daemon.webhook_targets import address_refusal
from tests.daemon_proc import DaemonProc
from tests.receiver import ALLOW_LOOPBACK, LEAKED_SECRET, Receiver
from tests.test_api_support import admin, db_dump, issue, make_product, must

FAST = {"KEYSMITH_WEBHOOK_BACKOFF": "0.2", "KEYSMITH_WEBHOOK_TIMEOUT": "1"}
PRIVATE_URLS = [
    "http://127.0.0.1:8080/hook",
    "http://localhost:8080/hook",
    "http://api.localhost/hook",
    "http://0.0.0.0:8080/hook",
    "http://[::ffff:127.0.0.1]:8080/hook",
    "http://[::1]/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.7/hook",
    "http://192.168.1.20/hook",
    "http://[fd00::7]/hook",
    "http://127.1/hook",  # legacy forms the C library still reads as 127.0.0.1
    "http://2130706433/hook",
    "http://224.0.0.1/hook",
]


def _create(daemon: DaemonProc, url: str) -> tuple[int, dict]:
    body = {"url": url, "event_types": ["license.issued"]}
    return admin(daemon, "POST", "/v1/admin/webhook-endpoints", body)


def _first_attempt(daemon: DaemonProc, endpoint_id: str, headers: dict | None = None) -> dict:
    path = f"/v1/admin/webhook-deliveries?endpoint_id={endpoint_id}"
    deadline = time.monotonic() + 60
    while True:
        found = must(daemon.request("GET", path, headers=headers or daemon.admin_headers()), 200)
        # Counted, not just logged: on a loaded machine an attempt can outlive its lease, and
        # such an attempt is logged but decides nothing (its last_error stays unset).
        if found["deliveries"] and found["deliveries"][0]["attempt_count"]:
            return found["deliveries"][0]
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def test_endpoints_at_private_addresses_are_refused_by_name_and_nothing_is_written(tmp_path):
    with DaemonProc(tmp_path, env=FAST) as daemon:
        before = db_dump(daemon)
        for url in PRIVATE_URLS:
            status, answer = _create(daemon, url)
            assert status == 400, (url, answer)
            assert answer["error"] == "bad_request" and "'url'" in answer["message"], answer
            assert "KEYSMITH_WEBHOOK_ALLOW_NETWORKS" in answer["message"], answer
        assert db_dump(daemon) == before
        # A name is resolved when sent, not now; a public address is accepted.
        must(_create(daemon, "https://crm.example.com/hook"), 200)
        must(_create(daemon, "http://93.184.215.14/hook"), 200)

    # The operator allows loopback: only loopback, and only as much of it as allowed.
    env = {**FAST, "KEYSMITH_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32"}
    with DaemonProc(tmp_path / "allowed", env=env) as daemon:
        must(_create(daemon, "http://127.0.0.1:8080/hook"), 200)
        must(_create(daemon, "http://[::ffff:127.0.0.1]:8080/hook"), 200)
        for url in ("http://127.0.0.2/hook", "http://169.254.169.254/", "http://[::1]/hook"):
            assert _create(daemon, url)[0] == 400, url


def _hostname_address() -> str:
    """The address this machine's own name resolves to: a name that leads inside."""
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError as e:
        pytest.skip(f"this machine's name does not resolve: {e}")
    if address_refusal(ipaddress.ip_address(address), ()) is None:
        pytest.skip(f"this machine's name resolves to a public address ({address})")
    return address


def test_private_destinations_are_refused_at_every_attempt_until_the_operator_allows_them(
    tmp_path,
):
    address = _hostname_address()
    allow = {**FAST, "KEYSMITH_WEBHOOK_ALLOW_NETWORKS": f"{address}/32"}
    with Receiver(host=address) as receiver:
        # An endpoint written as an address, from before the rule (or a looser setting).
        with DaemonProc(tmp_path, env=allow) as daemon:
            literal = must(_create(daemon, receiver.url), 200)
        db_path = daemon.db_path
        with DaemonProc(tmp_path, env=FAST, db_path=db_path) as daemon:
            # A name passes creation; what it resolves to is checked when connecting.
            named_url = receiver.url.replace(address, socket.gethostname())
            by_name = must(_create(daemon, named_url), 200)
            issue(daemon, make_product(daemon))
            for endpoint in (literal, by_name):
                refused = _first_attempt(daemon, endpoint["id"])
                assert refused["status"] == "pending", refused
                assert refused["last_status_code"] is None
                assert refused["last_error"].startswith("not sent: the receiver's address is not")
            time.sleep(1.0)  # more attempts, each refused again
            assert receiver.seen == []
        with DaemonProc(tmp_path, env=allow, db_path=db_path):
            # The same deliveries go once the operator allows the network.
            arrived = receiver.wait_for(2)
            assert {s.headers["Host"].split(":")[0] for s in arrived} == {
                address,
                socket.gethostname(),
            }


def test_the_delivery_log_keeps_no_byte_of_a_failed_answer(tmp_path):
    env = {**FAST, **ALLOW_LOOPBACK}
    with Receiver(mode="leaky") as receiver, DaemonProc(tmp_path, env=env) as daemon:
        endpoint = must(_create(daemon, receiver.url), 200)
        issue(daemon, make_product(daemon))
        key = {"label": "dashboard", "role": "read-only"}
        token = must(admin(daemon, "POST", "/v1/admin/api-keys", key), 200)["token"]
        reader = {"Authorization": f"Bearer {token}"}
        failed = _first_attempt(daemon, endpoint["id"], reader)
        assert receiver.seen, "the receiver was asked"
        assert failed["last_status_code"] == 500
        assert failed["last_error"] == "HTTP 500 Internal Server Error"
        secret = LEAKED_SECRET.split()[1]
        assert secret not in str(failed) and secret not in db_dump(daemon)


@contextmanager
def _listener(behaviour: str) -> Iterator[int]:
    """A TCP port on loopback that accepts and then `close`s at once or `hang`s silent."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if behaviour == "close":
                conn.close()
            else:
                held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        for conn in held:
            conn.close()


def _closed_port() -> int:
    with closing(socket.create_server(("127.0.0.1", 0))) as probe:
        return probe.getsockname()[1]


def test_connection_failures_read_the_same_whether_a_port_is_open_or_closed(tmp_path: Path):
    env = {**FAST, **ALLOW_LOOPBACK}
    with (
        _listener("close") as closing_port,
        _listener("hang") as silent_port,
        DaemonProc(tmp_path, env=env) as daemon,
    ):
        ports = {"closed": _closed_port(), "closes": closing_port, "silent": silent_port}
        endpoints = {
            name: must(_create(daemon, f"http://127.0.0.1:{port}/hook"), 200)["id"]
            for name, port in ports.items()
        }
        issue(daemon, make_product(daemon))
        errors = {name: _first_attempt(daemon, e)["last_error"] for name, e in endpoints.items()}
        assert len(set(errors.values())) == 1, errors
        assert errors["closed"].startswith("no answer: could not connect"), errors
