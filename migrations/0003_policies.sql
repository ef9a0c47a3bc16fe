-- 0003 policies: the tiers a product is sold under.
--
-- Why: one product, several terms. A policy sets the price, how long a
-- license lasts (duration_days, NULL = perpetual), how many machines may use
-- it at once (max_machines, the seat limit), whether it is a trial, which
-- entitlements its keys carry (JSON array of slugs), and whether buyers see it
-- (is_public). Licenses and invoices remember the policy they came from.
-- Existing licenses and invoices keep policy_id NULL: they predate policies.

CREATE TABLE policies (
    id            TEXT    PRIMARY KEY,
    product_id    TEXT    NOT NULL REFERENCES products (id),
    slug          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    price_sats    INTEGER NOT NULL DEFAULT 0 CHECK (price_sats >= 0),
    duration_days INTEGER CHECK (duration_days IS NULL OR duration_days > 0),
    max_machines  INTEGER NOT NULL DEFAULT 1 CHECK (max_machines >= 1),
    is_trial      INTEGER NOT NULL DEFAULT 0 CHECK (is_trial IN (0, 1)),
    entitlements  TEXT    NOT NULL DEFAULT '[]'
                  CHECK (json_valid(entitlements) AND json_type(entitlements) = 'array'),
    is_public     INTEGER NOT NULL DEFAULT 1 CHECK (is_public IN (0, 1)),
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at    INTEGER NOT NULL,
    UNIQUE (product_id, slug)
);

ALTER TABLE licenses ADD COLUMN policy_id TEXT REFERENCES policies (id);
ALTER TABLE invoices ADD COLUMN policy_id TEXT REFERENCES policies (id);

CREATE INDEX licenses_policy_idx ON licenses (policy_id);
