"""Realistic rows for every table of the licensing schema, at any schema version.

`seed(conn, version, scale)` fills the foreign-key web as a running shop would:
an issuer key (plus a retired one), settings, products with tiers (policies),
licenses issued under them (active, revoked, suspended, expiring, trial,
machine-bound), the machines they run on, invoices (paid, pending, expired,
free), discount codes of every kind the schema allows and their redemptions,
and an audit trail. Only tables and columns that exist at `version` are
written; columns a later migration adds keep their defaults.

Rows are generated from a random generator seeded by (version, scale), so the
same call gives the same ids, keys and values; times are relative to `now`.
License keys have the real LIC1 v2 layout with consistent payload fields but
random signature bytes: seeded rows exercise storage and migrations, not
cryptography (the licensing tests issue real keys).

About 285 rows per unit of `scale`; scale 3500 gives about a million rows
(around 20 s on this kind of machine, most of it SQLite's B-tree inserts).
Call it once per database (slugs and codes would collide on a second call).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import itemgetter

# The version that created each table; a seed at version v fills the tables created at or before v.
TABLE_SINCE: dict[str, int] = {
    "issuer_keys": 1,
    "settings": 1,
    "products": 1,
    "licenses": 1,
    "machines": 1,
    "invoices": 1,
    "audit_log": 1,
    "policies": 3,
    "discount_codes": 5,
    "discount_redemptions": 5,
    "api_keys": 14,
    "webhook_endpoints": 14,
    "webhook_events": 14,
    "webhook_deliveries": 14,
    "webhook_attempts": 14,
    "discount_code_terms": 16,
}

# Every column the seed knows, in insertion order (parents before children).
# Columns missing from the database at the seeded version are dropped from each row.
COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(names.split())
    for table, names in {
        "issuer_keys": "id algorithm private_key public_key created_at active retired_at",
        "settings": "key value updated_at",
        "products": "id slug name description price_sats metadata active created_at updated_at"
        " entitlements_catalog price_currency price_minor",
        "policies": "id product_id slug name description price_sats duration_days max_machines"
        " is_trial entitlements is_public active created_at highlighted sort_order is_default"
        " price_currency price_minor duration_seconds grace_seconds unlimited_machines metadata",
        "licenses": "id product_id issuer_key_id license_key status issued_at expires_at"
        " fingerprint_hash note revoked_at revoke_reason suspended_at policy_id is_trial"
        " entitlements max_machines grace_seconds buyer_email suspend_reason",
        "machines": "id license_id fingerprint first_seen_at last_seen_at hostname platform"
        " deactivated_at deactivate_reason",
        "invoices": "id product_id license_id status provider provider_invoice_id checkout_url"
        " amount_sats buyer_email buyer_note created_at settled_at policy_id discount_sats"
        " amount_currency amount_minor",
        "discount_codes": "id code product_id policy_id kind amount max_redemptions expires_at"
        " disabled note created_at",
        "discount_redemptions": "id code_id invoice_id license_id buyer_email redeemed_at",
        "discount_code_terms": "code_id percent_bps referrer_label policy_ids",
        "audit_log": "created_at actor action subject detail",
        "api_keys": "id label role scopes token_hash token_prefix created_at revoked_at",
        "webhook_endpoints": "id url event_types description secret enabled created_at",
        "webhook_events": "id event_type payload created_at",
        "webhook_deliveries": "id endpoint_id event_id status attempts next_attempt_at"
        " created_at delivered_at",
        "webhook_attempts": "delivery_id attempt status response_code latency_ms error at",
    }.items()
}

DAY = 86_400
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)
PRODUCTS_PER_UNIT = 4
LICENSES_PER_PRODUCT = 12
UNITS_PER_CHUNK = 250

_PRODUCT_NAMES = (
    ("photo-vault", "Photo Vault", "Private photo library with offline face search"),
    ("ledger-lens", "Ledger Lens", "Read-only dashboards for your bitcoin node"),
    ("notebook-sync", "Notebook Sync", "End-to-end encrypted notes across devices"),
    ("relay-guard", "Relay Guard", "Spam filtering for self-hosted Nostr relays"),
    ("mail-sieve", "Mail Sieve", "Rules engine for self-hosted mail"),
    ("backup-pilot", "Backup Pilot", "Incremental, deduplicated backups to any S3 target"),
)
_ENTITLEMENTS = (
    ("sync", "Cloud sync", "Sync between devices"),
    ("ai_summaries", "AI summaries", "Local model summaries"),
    ("priority_support", "Priority support", "Answers within one business day"),
    ("team_seats", "Team seats", "Share with a team"),
)
# (slug, name, price factor of the product price, duration_days, seats, trial, entitlements)
_TIERS = (
    ("trial", "14-day trial", 0.0, 14, 1, 1, ("sync",)),
    ("yearly", "Yearly", 1.0, 365, 3, 0, ("sync", "ai_summaries")),
    ("lifetime", "Lifetime", 3.0, None, 5, 0, ("sync", "ai_summaries", "priority_support")),
)
_PLATFORMS = ("linux-x86_64", "linux-aarch64", "macos-arm64", "windows-x86_64")
_FIRST_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan")
_MAIL_DOMAINS = ("example.com", "example.org", "proton.me", "fastmail.com")


@dataclass
class _Shop:
    """Rows being built, per table, in COLUMNS order."""

    rng: random.Random
    version: int
    now: int
    rows: dict[str, list[tuple]] = field(default_factory=lambda: {t: [] for t in COLUMNS})
    # Encoded random signatures, reused: encoding base32 is the seed's slowest step.
    signatures: list[str] = field(default_factory=list)

    def uuid(self) -> str:
        """A random version-4 UUID string (formatted by hand: uuid.UUID is 4x slower)."""
        n = self.rng.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET
        h = f"{n:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def ago(self, max_days: int, min_days: int = 0) -> int:
        return self.now - self.rng.randint(min_days * DAY, max_days * DAY)

    def email(self) -> str:
        name = self.rng.choice(_FIRST_NAMES)
        return f"{name}.{self.rng.randint(1, 9999)}@{self.rng.choice(_MAIL_DOMAINS)}"

    def audit(self, at: int, actor: str, action: str, subject: str, **detail: object) -> None:
        self.rows["audit_log"].append((at, actor, action, subject, json.dumps(detail)))


def seed(
    conn: sqlite3.Connection, version: int, scale: int = 1, *, now: int | None = None
) -> dict[str, int]:
    """Insert realistic rows in every table that exists at schema `version`.

    Returns the number of rows inserted per table. Runs in one savepoint:
    on any error nothing is inserted.
    """
    if scale < 1:
        raise ValueError(f"scale must be at least 1, got {scale}")
    tables = [t for t in COLUMNS if TABLE_SINCE[t] <= version]  # parents first
    missing = [t for t in tables if not _columns_of(conn, t)]
    if missing:
        raise ValueError(f"database is not at schema version {version}: missing {missing}")
    shop = _Shop(
        rng=random.Random(f"keysmith-seed:{version}:{scale}"),
        version=version,
        now=int(time.time()) if now is None else now,
    )
    key_ids = _issuer_keys_and_settings(shop)
    inserted = dict.fromkeys(tables, 0)
    # Random UUID keys land all over each B-tree; a big page cache for the bulk
    # insert halves its time at a million rows. The caller's setting comes back after.
    cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute("PRAGMA cache_size = -262144")
    conn.execute("SAVEPOINT seed")
    try:
        # In chunks of units, to keep memory flat: a unit only references its own rows
        # and the issuer keys, so each chunk can be inserted parents first on its own.
        for first in range(0, scale, UNITS_PER_CHUNK):
            for unit in range(first, min(scale, first + UNITS_PER_CHUNK)):
                _unit(shop, unit, key_ids)
            for table in tables:
                inserted[table] += _insert(conn, table, shop.rows[table])
                shop.rows[table].clear()
    except BaseException:
        conn.execute("ROLLBACK TO seed")
        conn.execute("RELEASE seed")
        raise
    finally:
        conn.execute(f"PRAGMA cache_size = {int(cache_size)}")
    conn.execute("RELEASE seed")
    return inserted


def count_rows(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per table, for every table except SQLite's and the migrator's (names starting '_')."""
    names = [
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_%' ESCAPE '\\' "
            "ORDER BY name"
        )
    ]
    return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


def _columns_of(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f'PRAGMA main.table_info("{table}")')]


def _insert(conn: sqlite3.Connection, table: str, rows: list[tuple]) -> int:
    present = set(_columns_of(conn, table))
    wanted = COLUMNS[table]
    keep = [i for i, c in enumerate(wanted) if c in present]
    names = ", ".join(wanted[i] for i in keep)
    marks = ", ".join("?" * len(keep))
    project = itemgetter(*keep)
    sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"
    if len(keep) == 1:
        conn.executemany(sql, ((project(r),) for r in rows))
    else:
        conn.executemany(sql, map(project, rows))
    return len(rows)


def _issuer_keys_and_settings(shop: _Shop) -> tuple[int, int]:
    """A key retired over a year ago and the active one (ids 1, 2); licenses use the active one."""
    retired_at = shop.ago(400, 380)
    for key_id, active in ((1, 0), (2, 1)):
        private, public = _ed25519_pair(shop.rng.randbytes(32))
        created = retired_at - 300 * DAY if key_id == 1 else retired_at
        shop.rows["issuer_keys"].append(
            (
                key_id,
                "ed25519",
                private,
                public,
                created,
                active,
                None if active else retired_at,
            )
        )
    settings = {
        "admin_api_key": base64.urlsafe_b64encode(shop.rng.randbytes(32)).decode().rstrip("="),
        "store_name": "Indie Tools Shop",
        "support_email": "support@example.com",
        "license_grace_days": "7",
    }
    for key, value in settings.items():
        shop.rows["settings"].append((key, value, shop.ago(390, 380)))
    return 1, 2


def _ed25519_pair(seed_bytes: bytes) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = Ed25519PrivateKey.from_private_bytes(seed_bytes).public_key()
    return seed_bytes, public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _unit(shop: _Shop, unit: int, key_ids: tuple[int, int]) -> None:
    """One slice of the shop: a few products, their tiers, licenses, sales and codes."""
    for n in range(PRODUCTS_PER_UNIT):
        product = _product(shop, unit, n)
        tiers = _policies(shop, product) if shop.version >= 3 else []
        codes = _discount_codes(shop, unit, n, product, tiers) if shop.version >= 5 else []
        for _ in range(LICENSES_PER_PRODUCT):
            _sale(shop, product, tiers, codes, key_ids)
        _unsold_invoices(shop, product)
    if shop.version >= 14:
        _integrations(shop, unit)


def _integrations(shop: _Shop, unit: int) -> None:
    """A support desk's API key (one revoked) and a CRM's webhook with delivered, failed and
    pending deliveries, each with its attempts."""
    for role, revoked in (("support", None), ("read-only", shop.ago(30))):
        token_hash = shop.rng.randbytes(32).hex()
        shop.rows["api_keys"].append(
            (
                shop.uuid(),
                f"desk {unit}",
                role,
                '["audit:read"]',
                token_hash,
                "ks_" + token_hash[:6],
                shop.ago(200, 100),
                revoked,
            )
        )
    endpoint_id = shop.uuid()
    shop.rows["webhook_endpoints"].append(
        (
            endpoint_id,
            f"https://crm.example.com/hooks/{unit}",
            '["license.issued"]',
            "CRM",
            shop.rng.randbytes(32).hex(),
            1,
            shop.ago(200, 100),
        )
    )
    for n, status in enumerate(("delivered", "failed", "pending")):
        event_id = unit * 3 + n + 1
        at = shop.ago(90)
        timestamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
        payload = json.dumps({"event_type": "license.issued", "timestamp": timestamp, "data": {}})
        shop.rows["webhook_events"].append((event_id, "license.issued", payload, at))
        delivery_id = shop.uuid()
        shop.rows["webhook_deliveries"].append(
            (
                delivery_id,
                endpoint_id,
                event_id,
                status,
                2,
                float(at + 60),
                at,
                at + 60 if status == "delivered" else None,
            )
        )
        shop.rows["webhook_attempts"].append((delivery_id, 1, "retry", 503, 12, None, at))
        final = {
            "delivered": ("delivered", 200, None),
            "failed": ("failed", None, "timeout"),
            "pending": ("retry", 500, None),
        }[status]
        shop.rows["webhook_attempts"].append(
            (delivery_id, 2, final[0], final[1], 30, final[2], at + 60)
        )


@dataclass(frozen=True)
class _Product:
    id: str
    slug: str
    price_sats: int
    created_at: int


def _product(shop: _Shop, unit: int, n: int) -> _Product:
    base_slug, name, description = _PRODUCT_NAMES[(unit * PRODUCTS_PER_UNIT + n) % 6]
    suffix = "" if unit == 0 and n < 6 else f"-{unit}-{n}"
    slug = base_slug + suffix
    product = _Product(
        shop.uuid(), slug, shop.rng.choice((25_000, 50_000, 120_000, 210_000)), shop.ago(720, 420)
    )
    catalog = json.dumps([{"slug": s, "name": nm, "description": d} for s, nm, d in _ENTITLEMENTS])
    currency, minor = _fiat_or_btc(shop, product.price_sats)
    metadata = json.dumps({"homepage": f"https://{base_slug}.example.com", "support_days": 30})
    shop.rows["products"].append(
        (
            product.id,
            slug,
            name + ("" if not suffix else f" {unit}.{n}"),
            description,
            product.price_sats,
            metadata,
            int(n != 3),
            product.created_at,
            product.created_at + shop.rng.randint(0, 30) * DAY,
            catalog,
            currency,
            minor,
        )
    )
    shop.audit(product.created_at, "admin", "product.create", f"product:{product.id}", slug=slug)
    return product


def _fiat_or_btc(shop: _Shop, sats: int) -> tuple[str, int]:
    """After 0010 some sellers price in fiat; before it the columns do not exist."""
    if shop.version >= 10 and shop.rng.random() < 0.3:
        return shop.rng.choice(("USD", "EUR")), max(100, sats // 20)
    return "BTC", sats


@dataclass(frozen=True)
class _Tier:
    id: str
    slug: str
    price_sats: int
    duration_days: int | None
    is_trial: int
    entitlements: tuple[str, ...]


def _policies(shop: _Shop, product: _Product) -> list[_Tier]:
    tiers = []
    for order, (slug, name, factor, days, seats, trial, ents) in enumerate(_TIERS):
        tier = _Tier(shop.uuid(), slug, int(product.price_sats * factor), days, trial, ents)
        currency, minor = _fiat_or_btc(shop, tier.price_sats)
        shop.rows["policies"].append(
            (
                tier.id,
                product.id,
                slug,
                name,
                f"{name} license",
                tier.price_sats,
                days if shop.version < 13 else None,  # 0013 moved durations to seconds
                seats,
                trial,
                json.dumps(list(ents)),
                int(slug != "lifetime" or shop.rng.random() < 0.5),
                1,
                product.created_at + DAY,
                int(slug == "yearly"),
                order,
                int(slug == "yearly"),
                currency,
                minor,
                *_keysat_terms(shop, days, seats),
                # 0017's metadata, as a Keysat seller writes it (no draw: older seeds stay).
                *(() if shop.version < 17 else (json.dumps({"highlight": slug == "yearly"}),)),
            )
        )
        tiers.append(tier)
    return tiers


def _keysat_terms(shop: _Shop, days: int | None, seats: int) -> tuple:
    """Migration 0013's policy columns: the duration in seconds (duration_days then NULL, as
    0013 leaves it), a grace, unlimited seats now and then. Nothing drawn before 0013, so
    older seeds stay the same."""
    if shop.version < 13:
        return ()
    grace = shop.rng.choice((0, 0, DAY, 7 * DAY))
    return (None if days is None else days * DAY, grace, int(seats > 1 and shop.rng.random() < 0.3))


def _license_overrides(shop: _Shop, status: str) -> tuple:
    """Migration 0013's license columns: per-license seats and grace, buyer, suspend reason."""
    if shop.version < 13:
        return ()
    rng = shop.rng
    seats = rng.choice((None, None, None, 0, 5))
    grace = rng.choice((None, None, 3600))
    email = f"{rng.choice(_FIRST_NAMES).lower()}@example.org" if rng.random() < 0.5 else None
    return (seats, grace, email, "unpaid invoice" if status == "suspended" else None)


@dataclass(frozen=True)
class _Code:
    id: str
    kind: str
    amount: int
    tier: _Tier | None


def _discount_codes(
    shop: _Shop, unit: int, n: int, product: _Product, tiers: list[_Tier]
) -> list[_Code]:
    kinds = [
        ("LAUNCH20", "percent", 20, None),
        ("SAVE5K", "fixed_sats", 5_000, None),
        ("FREEBETA", "free_license", 0, tiers[1]),
        ("PRESSKIT", "free_license", 0, tiers[2]),
    ]
    if shop.version >= 9:
        kinds.append(("FLAT1K", "set_price", 1_000, tiers[1]))
    codes = []
    for i, (prefix, kind, amount, tier) in enumerate(kinds):
        code = _Code(shop.uuid(), kind, amount, tier)
        created = product.created_at + shop.rng.randint(2, 20) * DAY
        expired = prefix == "PRESSKIT"
        shop.rows["discount_codes"].append(
            (
                code.id,
                f"{prefix}-{unit:04X}{n}",
                product.id if i % 2 == 0 or tier else None,
                tier.id if tier else None,
                kind,
                amount,
                25 if expired else (None if i else 500),
                created + 30 * DAY if expired else None,
                int(i == 1 and unit % 2 == 1),
                "press and reviewers" if expired else "",
                created,
            )
        )
        shop.audit(created, "admin", "discount_code.create", f"discount_code:{code.id}", kind=kind)
        if shop.version >= 16:
            # Keysat's terms: the launch code's percent in basis points, with its referrer.
            launch = prefix == "LAUNCH20"
            shop.rows["discount_code_terms"].append(
                (
                    code.id,
                    amount * 100 if kind == "percent" else None,
                    "launch-newsletter" if launch else None,
                    "[]",
                )
            )
        codes.append(code)
    return codes


def _sale(
    shop: _Shop,
    product: _Product,
    tiers: list[_Tier],
    codes: list[_Code],
    key_ids: tuple[int, int],
) -> None:
    """One license: how it was obtained (admin, purchase, purchase with code, free code)."""
    rng = shop.rng
    tier = rng.choice(tiers) if tiers else None
    channel = rng.choices(("admin", "purchase", "discounted", "free"), (1, 5, 2, 1))[0]
    code = None
    if codes and channel != "admin":
        wanted = "free_license" if channel == "free" else None
        pool = [c for c in codes if (c.kind == "free_license") == (wanted is not None)]
        code = rng.choice(pool) if channel != "purchase" else None
        if code and code.tier:
            tier = code.tier
    elif channel in ("discounted", "free"):
        channel = "purchase"
    license_id = _license(shop, product, tier, key_ids, channel)
    if channel == "admin":
        return
    invoice_id = _paid_invoice(shop, product, tier, license_id, code)
    if code:
        shop.rows["discount_redemptions"].append(
            (
                shop.uuid(),
                code.id,
                invoice_id,
                license_id,
                shop.email(),
                shop.ago(300),
            )
        )


def _license(
    shop: _Shop, product: _Product, tier: _Tier | None, key_ids: tuple[int, int], channel: str
) -> str:
    rng = shop.rng
    license_id = shop.uuid()
    issued = shop.ago(365)
    days = tier.duration_days if tier else None
    expires = issued + days * DAY if days else None
    is_trial = tier.is_trial if tier else 0
    ents = tier.entitlements if tier else ()
    machines = rng.choice((0, 1, 1, 2, 3))
    fingerprints = [
        hashlib.sha256(f"{license_id}:{i}".encode()).hexdigest() for i in range(machines)
    ]
    bound = fingerprints[0] if fingerprints and rng.random() < 0.3 else None
    status = rng.choices(("active", "revoked", "suspended"), (20, 2, 1))[0]
    revoked_at = issued + rng.randint(1, 60) * DAY if status == "revoked" else None
    key = _license_key(shop, product.id, license_id, issued, expires, bound, is_trial, ents)
    shop.rows["licenses"].append(
        (
            license_id,
            product.id,
            key_ids[1],
            key,
            status,
            issued,
            expires,
            bound,
            f"issued by {channel}",
            revoked_at,
            "chargeback" if revoked_at else None,
            issued + DAY if status == "suspended" else None,
            tier.id if tier else None,
            is_trial,
            json.dumps(list(ents)),
            *_license_overrides(shop, status),
        )
    )
    shop.audit(
        issued,
        "admin" if channel == "admin" else "system",
        "license.issue",
        f"license:{license_id}",
        product=product.slug,
    )
    if revoked_at:
        shop.audit(
            revoked_at, "admin", "license.revoke", f"license:{license_id}", reason="chargeback"
        )
    for i, fingerprint in enumerate(fingerprints):
        first = issued + rng.randint(0, 3600)
        off = i == 2 and rng.random() < 0.5
        shop.rows["machines"].append(
            (
                shop.uuid(),
                license_id,
                fingerprint,
                first,
                first + rng.randint(0, 200) * DAY,
                f"{rng.choice(_FIRST_NAMES)}-laptop-{i}",
                rng.choice(_PLATFORMS),
                first + 10 * DAY if off else None,
                "replaced hardware" if off else None,
            )
        )
    return license_id


def _license_key(
    shop: _Shop,
    product_id: str,
    license_id: str,
    issued: int,
    expires: int | None,
    bound: str | None,
    is_trial: int,
    ents: Iterable[str],
) -> str:
    """A LIC1 key with the v2 payload layout and a random (non-verifying) signature."""
    flags = (1 if bound else 0) | (2 if is_trial else 0)
    tail = b"".join(bytes([len(e)]) + e.encode() for e in ents)
    payload = (
        bytes([2, flags])
        + uuid.UUID(product_id).bytes
        + uuid.UUID(license_id).bytes
        + issued.to_bytes(8, "big")
        + (expires or 0).to_bytes(8, "big")
        + (bytes.fromhex(bound) if bound else bytes(32))
        + bytes([len(tuple(ents))])
        + tail
    )
    if len(shop.signatures) < 256:
        shop.signatures.append(_b32(shop.rng.randbytes(64)))
    return f"LIC1-{_b32(payload)}-{shop.rng.choice(shop.signatures)}"


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=")


def _paid_invoice(
    shop: _Shop, product: _Product, tier: _Tier | None, license_id: str, code: _Code | None
) -> str:
    base = tier.price_sats if tier else product.price_sats
    discount = _discount(base, code)
    free = code is not None and code.kind == "free_license"
    created = shop.ago(365)
    invoice_id = shop.uuid()
    amount = base - discount
    shop.rows["invoices"].append(
        (
            invoice_id,
            product.id,
            license_id,
            "settled",
            "free" if free else "btcpay",
            None if free else _provider_ref(shop),
            None if free else _checkout(shop),
            amount,
            shop.email(),
            None,
            created,
            created + shop.rng.randint(60, 3600),
            tier.id if tier else None,
            discount,
            "BTC",
            amount,
        )
    )
    return invoice_id


def _discount(base: int, code: _Code | None) -> int:
    if code is None:
        return 0
    if code.kind == "percent":
        return base * code.amount // 100
    if code.kind == "fixed_sats":
        return min(base, code.amount)
    if code.kind == "set_price":
        return max(0, base - code.amount)
    return base


def _unsold_invoices(shop: _Shop, product: _Product) -> None:
    """Checkouts that never paid: one still pending, one expired."""
    for status in ("pending", "expired"):
        created = shop.ago(30)
        shop.rows["invoices"].append(
            (
                shop.uuid(),
                product.id,
                None,
                status,
                "btcpay",
                _provider_ref(shop),
                _checkout(shop),
                product.price_sats,
                shop.email(),
                "gift for a friend",
                created,
                None,
                None,
                0,
                "BTC",
                product.price_sats,
            )
        )


def _provider_ref(shop: _Shop) -> str:
    return "".join(shop.rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=22))


def _checkout(shop: _Shop) -> str:
    return f"https://pay.example.com/i/{shop.rng.getrandbits(64):016x}"
