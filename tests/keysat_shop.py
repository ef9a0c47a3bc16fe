"""A real Keysat shop on disk, for the import tests: a Keysat database (Keysat's own migration
files applied by the real sqlx-cli, or built from the committed description of what they make:
tests/keysat_schema.py), rows inserted through Keysat's schema, keys signed the way Keysat's
`crypto/mod.rs` signs them.

The signer below is written from `crypto/mod.rs` (`LicensePayload::to_bytes`, `encode_key`)
and shares no code with daemon/licensing/keys.py, so the import test also checks that the two
formats agree byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sqlite3
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.keysat_schema import Source, make

DAY = 86_400
FLAG_TRIAL = 0b10
# The fingerprints of the two machines using the "valid" license's two seats.
MACHINES = ("laptop-1", "desktop-1")


def rfc3339(unix: int) -> str:
    """As chrono's `to_rfc3339` writes it, with a fraction Keysat's payload drops."""
    return datetime.fromtimestamp(unix, UTC).replace(microsecond=123456).isoformat()


def keysat_key(
    private: Ed25519PrivateKey,
    product_id: str,
    license_id: str,
    issued_at: int,
    expires_at: int,
    entitlements: list[str],
    trial: bool,
) -> str:
    """`LicensePayload::to_bytes` (v2) and `encode_key`: BASE32_NOPAD of payload and signature."""
    payload = bytearray([2, FLAG_TRIAL if trial else 0])
    payload += uuid.UUID(product_id).bytes + uuid.UUID(license_id).bytes
    payload += issued_at.to_bytes(8, "big") + expires_at.to_bytes(8, "big") + bytes(32)
    payload.append(len(entitlements))
    for slug in entitlements:
        payload += bytes([len(slug.encode())]) + slug.encode()
    signature = private.sign(bytes(payload))

    def b32(data: bytes) -> str:
        return base64.b32encode(data).decode().rstrip("=")

    return f"LIC1-{b32(bytes(payload))}-{b32(signature)}"


@dataclass
class SeededLicense:
    id: str
    key: str
    # What Keysat's validate answers for it: ok, and the reason or in_grace_period.
    ok: bool
    reason: str | None = None
    in_grace: bool = False


@dataclass
class KeysatShop:
    path: Path
    private: Ed25519PrivateKey
    product_id: str
    product_slug: str
    policies: dict[str, str] = field(default_factory=dict)
    licenses: dict[str, SeededLicense] = field(default_factory=dict)

    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )


def new_id() -> str:
    return str(uuid.uuid4())


def build_shop(folder: Path, now: int, source: Source) -> KeysatShop:
    """A Keysat 0.2.0:63 database with a product, tiers, licenses in every state, machines,
    sales, codes and an audit trail, as Keysat's own code would have left them."""
    db = folder / "keysat.db"
    make(db, source)
    shop = KeysatShop(db, Ed25519PrivateKey.generate(), new_id(), "acme-app")
    with closing(sqlite3.connect(db)) as conn, conn:
        _seed(conn, shop, now)
    return shop


def insert_issuer(conn: sqlite3.Connection, private: Ed25519PrivateKey, created: int) -> None:
    """Keysat's `load_or_generate`: PKCS#8 and SPKI PEM in the singleton row."""
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()  # fmt: skip
    conn.execute(
        "INSERT INTO server_keys (id, algorithm, public_key_pem, private_key_pem, created_at) "
        "VALUES (1, 'ed25519', ?, ?, ?)",
        (public_pem, private_pem, rfc3339(created)),
    )


def _seed(conn: sqlite3.Connection, shop: KeysatShop, now: int) -> None:
    insert_issuer(conn, shop.private, now - 500 * DAY)
    conn.execute(
        "INSERT INTO settings (key, value, updated_at) VALUES ('operator_name', 'Acme Tools', ?)",
        (rfc3339(now),),
    )
    created = rfc3339(now - 450 * DAY)
    conn.execute(
        "INSERT INTO products (id, slug, name, description, price_sats, active, metadata_json, "
        "created_at, updated_at, price_currency, price_value, entitlements_catalog_json) "
        "VALUES (?, ?, 'Acme App', 'The app', 5000, 1, '{\"site\": \"acme\"}', ?, ?, 'SAT', "
        '5000, \'[{"slug": "pro", "name": "Pro", "description": ""}]\')',
        (shop.product_id, shop.product_slug, created, created),
    )
    _seed_policies(conn, shop, created)
    _seed_licenses(conn, shop, now)
    _seed_sales(conn, shop, now)


def _seed_policies(conn: sqlite3.Connection, shop: KeysatShop, created: str) -> None:
    tiers = [
        # slug, duration, grace, seats, trial, price override, entitlements, metadata, archived
        ("annual", 365 * DAY, 7 * DAY, 2, 0, None, ["pro"],
         {"description": "For teams", "highlight": True}, None),
        ("trial", 14 * DAY, 0, 1, 1, 0, [], {}, None),
        ("forever", 0, 0, 0, 0, 20000, ["pro"], {}, None),
        ("legacy", 30 * DAY, 0, 1, 0, 100, [], {}, created),
    ]  # fmt: skip
    for rank, (slug, duration, grace, seats, trial, price, ents, meta, archived) in enumerate(
        tiers
    ):
        shop.policies[slug] = new_id()
        conn.execute(
            "INSERT INTO policies (id, product_id, name, slug, duration_seconds, grace_seconds, "
            "max_machines, is_trial, price_sats_override, entitlements_json, metadata_json, "
            "active, created_at, updated_at, public, price_value_override, tier_rank, "
            "archived_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, 1, ?, ?, ?)",
            (shop.policies[slug], shop.product_id, slug.title(), slug, duration, grace, seats,
             trial, price, json.dumps(ents), json.dumps(meta), created, created, price, rank,
             archived),
        )  # fmt: skip


# name -> (policy, issued days ago, expires in days (None: never), grace days, seats, trial,
#          status, what Keysat's validate answers: (ok, reason, in grace))
LICENSES = {
    "valid": ("annual", 10, 355, 7, 2, False, "active", (True, None, False)),
    "revoked": ("annual", 40, 325, 7, 2, False, "revoked", (False, "revoked", False)),
    "suspended": ("annual", 50, 315, 7, 2, False, "suspended", (False, "suspended", False)),
    "expired": ("annual", 400, -35, 7, 2, False, "active", (False, "expired", False)),
    "in_grace": ("annual", 368, -3, 7, 2, False, "active", (True, None, True)),
    "perpetual": ("forever", 90, None, 0, 0, False, "active", (True, None, False)),
    "trial": ("trial", 2, 12, 0, 1, True, "active", (True, None, False)),
}


# A buyer's Nostr key Keysat recorded on one license (Keysmith keeps it, and filters by it).
NPUB = "npub1" + "q" * 58


def _seed_licenses(conn: sqlite3.Connection, shop: KeysatShop, now: int) -> None:
    for name, (tier, ago, expires_in, grace, seats, trial, status, answer) in LICENSES.items():
        license_id, issued = new_id(), now - ago * DAY
        expires = None if expires_in is None else now + expires_in * DAY
        ents = ["pro"] if tier != "trial" else []
        conn.execute(
            "INSERT INTO licenses (id, product_id, status, issued_at, revoked_at, "
            "revocation_reason, metadata_json, policy_id, expires_at, grace_seconds, "
            "max_machines, suspended_at, suspension_reason, entitlements_json, is_trial, "
            "buyer_email, nostr_npub) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (license_id, shop.product_id, status, rfc3339(issued),
             rfc3339(now - DAY) if status == "revoked" else None,
             "chargeback" if status == "revoked" else None,
             json.dumps({"source": "admin_issue", "note": f"{name} seat"}),
             shop.policies[tier], None if expires is None else rfc3339(expires), grace * DAY,
             seats, rfc3339(now - DAY) if status == "suspended" else None,
             "fraud review" if status == "suspended" else None, json.dumps(ents), int(trial),
             f"{name}@example.com", NPUB if name == "suspended" else None),
        )  # fmt: skip
        key = keysat_key(
            shop.private, shop.product_id, license_id, issued, expires or 0, ents, trial
        )
        shop.licenses[name] = SeededLicense(license_id, key, *answer)


def _seed_sales(conn: sqlite3.Connection, shop: KeysatShop, now: int) -> None:
    valid, trial = shop.licenses["valid"].id, shop.licenses["trial"].id
    laptop, desktop = (hashlib.sha256(fp.encode()).hexdigest() for fp in MACHINES)
    machines = [  # the same laptop deactivated once, then active again; and a desktop
        (valid, laptop, now - 9 * DAY, now - 8 * DAY, "reinstalled"),
        (valid, laptop, now - 7 * DAY, None, None),
        (valid, desktop, now - 6 * DAY, None, None),
    ]
    for license_id, fp_hash, activated, deactivated, reason in machines:
        conn.execute(
            "INSERT INTO machines (id, license_id, fingerprint, fingerprint_hash, hostname, "
            "platform, activated_at, last_heartbeat_at, deactivated_at, deactivation_reason) "
            "VALUES (?, ?, 'raw-fp', ?, 'box', 'linux-x64', ?, ?, ?, ?)",
            (new_id(), license_id, fp_hash, rfc3339(activated), rfc3339(activated + 60),
             None if deactivated is None else rfc3339(deactivated), reason),
        )  # fmt: skip
    paid, free, stale = new_id(), new_id(), new_id()
    for invoice_id, reference, status, amount, email in (
        (paid, "btcpay-123", "settled", 3750, "valid@example.com"),
        (free, f"free-{free}", "settled", 0, "trial@example.com"),
        (stale, "btcpay-456", "expired", 5000, None),
    ):
        conn.execute(
            "INSERT INTO invoices (id, btcpay_invoice_id, product_id, status, buyer_email, "
            "amount_sats, checkout_url, created_at, updated_at, policy_id) "
            "VALUES (?, ?, ?, ?, ?, ?, 'https://pay.example/i', ?, ?, ?)",
            (invoice_id, reference, shop.product_id, status, email, amount,
             rfc3339(now - 11 * DAY), rfc3339(now - 10 * DAY), shop.policies["annual"]),
        )  # fmt: skip
    conn.execute("UPDATE licenses SET invoice_id = ? WHERE id = ?", (paid, valid))
    conn.execute("UPDATE licenses SET invoice_id = ? WHERE id = ?", (free, trial))
    launch, freebie = new_id(), new_id()
    scope = json.dumps([shop.policies["annual"], shop.policies["forever"]])
    conn.execute(
        "INSERT INTO discount_codes (id, code, kind, amount, max_uses, used_count, "
        "referrer_label, description, active, created_at, updated_at, "
        "applies_to_policy_ids_json) VALUES (?, 'LAUNCH25', 'percent', 2500, 100, 1, "
        "'twitter', 'Launch week', 1, ?, ?, ?)",
        (launch, rfc3339(now - 30 * DAY), rfc3339(now - 30 * DAY), scope),
    )
    conn.execute(
        "INSERT INTO discount_codes (id, code, kind, amount, max_uses, used_count, "
        "applies_to_policy_id, description, active, created_at, updated_at) "
        "VALUES (?, 'FREEBIE', 'free_license', 0, 1, 1, ?, '', 0, ?, ?)",
        (freebie, shop.policies["trial"], rfc3339(now - 30 * DAY), rfc3339(now - 30 * DAY)),
    )
    for code, invoice, license_id, status, off in (
        (launch, paid, valid, "redeemed", 1250),
        (freebie, free, trial, "redeemed", 0),
        (launch, stale, None, "cancelled", 1250),
    ):
        conn.execute(
            "INSERT INTO discount_redemptions (id, code_id, invoice_id, license_id, status, "
            "discount_applied_sats, base_price_sats, final_price_sats, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 5000, ?, ?, ?)",
            (new_id(), code, invoice, license_id, status, off, 5000 - off,
             rfc3339(now - 11 * DAY), rfc3339(now - 10 * DAY)),
        )  # fmt: skip
    for kind, action, target, details in (
        ("admin_api_key", "license.revoke", shop.licenses["revoked"].id, {"reason": "chargeback"}),
        ("system", "invoice.settled", paid, {}),
    ):
        conn.execute(
            "INSERT INTO audit_log (actor_kind, actor_hash, action, target_kind, target_id, "
            "request_ip, details_json, occurred_at) VALUES (?, ?, ?, ?, ?, '10.0.0.1', ?, ?)",
            (kind, "ab" * 32 if kind != "system" else None, action, action.split(".")[0],
             target, json.dumps(details), rfc3339(now - DAY)),
        )  # fmt: skip


def copy_shop(shop: KeysatShop, to: Path) -> Path:
    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shop.path, to)
    return to
