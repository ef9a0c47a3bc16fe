-- 0005 discount codes and their redemptions.
--
-- Why: sellers hand out codes: a percentage off, a fixed amount off, or a
-- free license (redeemed at POST /v1/redeem, no payment). A code may be tied
-- to one product and policy (NULL = any), may be limited in uses
-- (max_redemptions, NULL = unlimited) and time (expires_at), and can be
-- disabled. Each use is a redemption row that links the code, the invoice it
-- discounted (free licenses get a 'free' invoice) and the license it produced.
-- 'amount' means: percent -> 1..100, fixed_sats -> sats off, free_license -> 0.
-- Invoices gain discount_sats: how much a code took off amount_sats.

CREATE TABLE discount_codes (
    id              TEXT    PRIMARY KEY,
    code            TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    product_id      TEXT    REFERENCES products (id),
    policy_id       TEXT    REFERENCES policies (id),
    kind            TEXT    NOT NULL CHECK (kind IN ('percent', 'fixed_sats', 'free_license')),
    amount          INTEGER NOT NULL DEFAULT 0 CHECK (amount >= 0),
    max_redemptions INTEGER CHECK (max_redemptions IS NULL OR max_redemptions >= 1),
    expires_at      INTEGER,
    disabled        INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    note            TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    CHECK (kind <> 'percent' OR amount BETWEEN 1 AND 100)
);

CREATE TABLE discount_redemptions (
    id          TEXT    PRIMARY KEY,
    code_id     TEXT    NOT NULL REFERENCES discount_codes (id),
    invoice_id  TEXT    REFERENCES invoices (id),
    license_id  TEXT    REFERENCES licenses (id),
    buyer_email TEXT,
    redeemed_at INTEGER NOT NULL
);

CREATE INDEX discount_codes_product_idx ON discount_codes (product_id);
CREATE INDEX discount_redemptions_code_idx ON discount_redemptions (code_id, redeemed_at);

ALTER TABLE invoices ADD COLUMN discount_sats INTEGER NOT NULL DEFAULT 0
    CHECK (discount_sats >= 0);
