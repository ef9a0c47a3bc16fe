-- 0010 multi-currency prices.
--
-- Why: sellers want to list prices in fiat as well as bitcoin. Every price
-- gains a currency (ISO 4217 style code; 'BTC' for bitcoin) and an amount in
-- that currency's minor unit (sats for BTC, cents for USD/EUR). Existing
-- prices are in sats, so the backfill copies them as BTC minor units. The
-- *_sats columns stay as they are for the Keysat wire format.
--
-- Additive and NOT idempotent: SQLite has no ADD COLUMN IF NOT EXISTS, so a
-- second run fails with "duplicate column name". Never put it on the
-- IDEMPOTENT_MIGRATIONS allowlist. It must not touch discount_codes or
-- discount_redemptions (see 0009).

ALTER TABLE products ADD COLUMN price_currency TEXT NOT NULL DEFAULT 'BTC'
    CHECK (length(price_currency) = 3 AND price_currency = upper(price_currency));
ALTER TABLE products ADD COLUMN price_minor INTEGER NOT NULL DEFAULT 0 CHECK (price_minor >= 0);

ALTER TABLE policies ADD COLUMN price_currency TEXT NOT NULL DEFAULT 'BTC'
    CHECK (length(price_currency) = 3 AND price_currency = upper(price_currency));
ALTER TABLE policies ADD COLUMN price_minor INTEGER NOT NULL DEFAULT 0 CHECK (price_minor >= 0);

ALTER TABLE invoices ADD COLUMN amount_currency TEXT NOT NULL DEFAULT 'BTC'
    CHECK (length(amount_currency) = 3 AND amount_currency = upper(amount_currency));
ALTER TABLE invoices ADD COLUMN amount_minor INTEGER NOT NULL DEFAULT 0
    CHECK (amount_minor >= 0);

UPDATE products SET price_minor = price_sats;
UPDATE policies SET price_minor = price_sats;
UPDATE invoices SET amount_minor = amount_sats;
