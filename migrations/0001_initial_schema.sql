-- 0001 initial schema: the licensing service's first tables.
--
-- Why: Keysmith issues Ed25519-signed license keys (LIC1 format) for products,
-- tracks the machines they run on, records sales, and keeps an audit trail.
-- Every time is integer unix seconds (UTC). Ids are text UUIDs, except
-- issuer_keys and audit_log, which use integer row ids.
--
-- Schema summary (the state after all migrations, with the version that added each part):
--   issuer_keys    id, algorithm, private_key (32 raw bytes), public_key (32 raw bytes),
--                  created_at, active (exactly one row active), retired_at
--   settings       key PRIMARY KEY, value, updated_at      (e.g. key 'admin_api_key')
--   products       id, slug UNIQUE, name, description, price_sats, metadata (JSON object),
--                  active, created_at, updated_at, entitlements_catalog (0007, JSON array of
--                  {slug, name, description}), price_currency + price_minor (0010)
--   policies (0003) id, product_id -> products, slug (UNIQUE per product), name, description,
--                  price_sats, duration_days (NULL = perpetual), max_machines (seats),
--                  is_trial, entitlements (JSON array of slugs), is_public, active, created_at,
--                  highlighted + sort_order + is_default (0007), price_currency + price_minor (0010)
--   licenses       id, product_id -> products, issuer_key_id -> issuer_keys, license_key UNIQUE,
--                  status 'active'|'revoked'|'suspended', issued_at, expires_at (NULL = never),
--                  fingerprint_hash (NULL = unbound), note, revoked_at, revoke_reason,
--                  suspended_at, policy_id -> policies (0003), is_trial + entitlements (0004)
--   machines       id, license_id -> licenses, fingerprint, first_seen_at, last_seen_at,
--                  UNIQUE (license_id, fingerprint), hostname + platform + deactivated_at +
--                  deactivate_reason (0006)
--   invoices       id, product_id -> products, license_id -> licenses (NULL until issued),
--                  status 'pending'|'settled'|'expired'|'invalid', provider 'btcpay'|'free',
--                  provider_invoice_id, checkout_url, amount_sats, buyer_email, buyer_note,
--                  created_at, settled_at, policy_id -> policies (0003), discount_sats (0005),
--                  amount_currency + amount_minor (0010)
--   discount_codes (0005, rebuilt by 0009) id, code UNIQUE (case-insensitive),
--                  product_id -> products, policy_id -> policies, kind 'percent'|'fixed_sats'|
--                  'free_license'|'set_price' (0009), amount, max_redemptions (NULL = unlimited),
--                  expires_at, disabled, note, created_at
--   discount_redemptions (0005, rebuilt by 0009) id, code_id -> discount_codes,
--                  invoice_id -> invoices, license_id -> licenses, buyer_email, redeemed_at
--   audit_log      id, created_at, actor, action, subject, detail (JSON object)

CREATE TABLE issuer_keys (
    id          INTEGER PRIMARY KEY,
    algorithm   TEXT    NOT NULL DEFAULT 'ed25519' CHECK (algorithm = 'ed25519'),
    -- Raw 32-byte Ed25519 seed and public key. Never logged, never served
    -- (only the public key leaves the database, as PEM).
    private_key BLOB    NOT NULL CHECK (length(private_key) = 32),
    public_key  BLOB    NOT NULL UNIQUE CHECK (length(public_key) = 32),
    created_at  INTEGER NOT NULL,
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    retired_at  INTEGER
);

-- Exactly one key signs new licenses; older keys stay to explain old licenses.
CREATE UNIQUE INDEX issuer_keys_one_active ON issuer_keys (active) WHERE active = 1;

CREATE TABLE settings (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE products (
    id          TEXT    PRIMARY KEY,
    slug        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    price_sats  INTEGER NOT NULL DEFAULT 0 CHECK (price_sats >= 0),
    metadata    TEXT    NOT NULL DEFAULT '{}'
                CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE licenses (
    id               TEXT    PRIMARY KEY,
    product_id       TEXT    NOT NULL REFERENCES products (id),
    -- The key that signed license_key (keys can be rotated).
    issuer_key_id    INTEGER NOT NULL REFERENCES issuer_keys (id),
    license_key      TEXT    NOT NULL UNIQUE,
    status           TEXT    NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'revoked', 'suspended')),
    issued_at        INTEGER NOT NULL,
    expires_at       INTEGER,
    -- Lower-case hex SHA-256 of the machine fingerprint the key is bound to.
    fingerprint_hash TEXT    CHECK (fingerprint_hash IS NULL OR length(fingerprint_hash) = 64),
    note             TEXT    NOT NULL DEFAULT '',
    revoked_at       INTEGER,
    revoke_reason    TEXT,
    suspended_at     INTEGER,
    CHECK (expires_at IS NULL OR expires_at > issued_at),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);

CREATE TABLE machines (
    id            TEXT    PRIMARY KEY,
    license_id    TEXT    NOT NULL REFERENCES licenses (id),
    fingerprint   TEXT    NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    UNIQUE (license_id, fingerprint),
    CHECK (last_seen_at >= first_seen_at)
);

CREATE TABLE invoices (
    id                  TEXT    PRIMARY KEY,
    product_id          TEXT    NOT NULL REFERENCES products (id),
    -- Set once the invoice settles and a license is issued for it.
    license_id          TEXT    REFERENCES licenses (id),
    status              TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'settled', 'expired', 'invalid')),
    -- 'free' invoices record free-license redemptions, which have no payment.
    provider            TEXT    NOT NULL CHECK (provider IN ('btcpay', 'free')),
    provider_invoice_id TEXT,
    checkout_url        TEXT,
    amount_sats         INTEGER NOT NULL CHECK (amount_sats >= 0),
    buyer_email         TEXT,
    buyer_note          TEXT,
    created_at          INTEGER NOT NULL,
    settled_at          INTEGER,
    CHECK ((status = 'settled') = (settled_at IS NOT NULL))
);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    created_at INTEGER NOT NULL,
    -- Who acted: 'admin', 'system' or 'public'.
    actor      TEXT    NOT NULL,
    -- What happened, dotted: 'license.issue', 'license.revoke', 'product.create', ...
    action     TEXT    NOT NULL,
    -- What it happened to, 'kind:id': 'license:<uuid>'.
    subject    TEXT,
    detail     TEXT    NOT NULL DEFAULT '{}'
               CHECK (json_valid(detail) AND json_type(detail) = 'object')
);
