-- 0009 discount codes gain the 'set_price' kind (the code sets the price to
-- 'amount' sats, whatever the list price).
--
-- Why a rebuild: SQLite cannot alter a CHECK constraint, so discount_codes is
-- created anew. discount_redemptions references it, and this file runs inside
-- the migrator's transaction with foreign_keys=ON (PRAGMA foreign_keys cannot
-- change inside a transaction). A naive copy / DROP / RENAME then fails with
-- "FOREIGN KEY constraint failed" at COMMIT on any database with redemptions:
-- DROP TABLE deletes the parent rows the redemptions point at. So: stash both
-- tables, drop the child then the parent (nothing points at the parent any
-- more, so the drop violates nothing), recreate both with their indexes
-- (including the ones 0008 added), restore rows with their original rowids,
-- and heal orphans.
--
-- Heal, as meant here: rows that point at something missing can only exist if
-- foreign keys were off when they were written (a hand edit, an old tool).
-- They would make the restore fail, so instead:
--   * a redemption whose code is missing keeps its code_id, and the code is
--     recreated as a disabled placeholder (code 'MISSING-<id>', amount 0), so
--     every redemption survives and still counts against nothing live;
--   * a redemption whose invoice or license is missing keeps its row with
--     that link set to NULL;
--   * a code whose product or policy is missing keeps its row with that link
--     set to NULL and is disabled, so it cannot widen to every product.
-- Every heal writes one audit_log row (action 'migration.0009.heal') holding
-- the ids it removed, so nothing is lost silently.
--
-- Idempotent (on the IDEMPOTENT_MIGRATIONS allowlist): running it again gives
-- the same rows, rowids, schema and indexes, and there are no orphans left to
-- heal, so no new audit rows. That holds on a database at any later version
-- ONLY because no later migration may alter discount_codes or
-- discount_redemptions, or add a table that references either of them. A
-- change to these tables belongs in this file's shape, never in a new one.

DROP TABLE IF EXISTS temp.discount_codes_stash;
DROP TABLE IF EXISTS temp.discount_redemptions_stash;

CREATE TEMP TABLE discount_codes_stash AS
SELECT rowid AS stash_rowid, id, code, product_id, policy_id, kind, amount,
       max_redemptions, expires_at, disabled, note, created_at
FROM main.discount_codes;

-- Without it each orphan check below scans the whole stash: minutes on a big shop.
CREATE UNIQUE INDEX temp.discount_codes_stash_id ON discount_codes_stash (id);

CREATE TEMP TABLE discount_redemptions_stash AS
SELECT rowid AS stash_rowid, id, code_id, invoice_id, license_id, buyer_email, redeemed_at
FROM main.discount_redemptions;

-- Child first: once it is gone, dropping the parent deletes rows nothing references.
DROP TABLE main.discount_redemptions;
DROP TABLE main.discount_codes;

CREATE TABLE discount_codes (
    id              TEXT    PRIMARY KEY,
    code            TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    product_id      TEXT    REFERENCES products (id),
    policy_id       TEXT    REFERENCES policies (id),
    kind            TEXT    NOT NULL
                    CHECK (kind IN ('percent', 'fixed_sats', 'free_license', 'set_price')),
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
CREATE INDEX discount_redemptions_license_idx ON discount_redemptions (license_id);
CREATE INDEX discount_redemptions_invoice_idx ON discount_redemptions (invoice_id);

-- Record every heal before doing it.
INSERT INTO audit_log (created_at, actor, action, subject, detail)
SELECT CAST(strftime('%s', 'now') AS INTEGER), 'system', 'migration.0009.heal',
       'discount_code:' || s.id,
       json_object('missing_product_id', s.product_id, 'missing_policy_id', s.policy_id,
                   'disabled', 1)
FROM (
    SELECT c.id,
           CASE WHEN c.product_id IS NOT NULL AND NOT EXISTS
                (SELECT 1 FROM products AS p WHERE p.id = c.product_id)
                THEN c.product_id END AS product_id,
           CASE WHEN c.policy_id IS NOT NULL AND NOT EXISTS
                (SELECT 1 FROM policies AS p WHERE p.id = c.policy_id)
                THEN c.policy_id END AS policy_id
    FROM temp.discount_codes_stash AS c
) AS s
WHERE s.product_id IS NOT NULL OR s.policy_id IS NOT NULL
ORDER BY s.id;

INSERT INTO audit_log (created_at, actor, action, subject, detail)
SELECT CAST(strftime('%s', 'now') AS INTEGER), 'system', 'migration.0009.heal',
       'discount_redemption:' || s.id,
       json_object('missing_code_id', s.code_id, 'missing_invoice_id', s.invoice_id,
                   'missing_license_id', s.license_id)
FROM (
    SELECT r.id,
           CASE WHEN NOT EXISTS (SELECT 1 FROM temp.discount_codes_stash AS c
                                 WHERE c.id = r.code_id)
                THEN r.code_id END AS code_id,
           CASE WHEN r.invoice_id IS NOT NULL AND NOT EXISTS
                (SELECT 1 FROM invoices AS i WHERE i.id = r.invoice_id)
                THEN r.invoice_id END AS invoice_id,
           CASE WHEN r.license_id IS NOT NULL AND NOT EXISTS
                (SELECT 1 FROM licenses AS l WHERE l.id = r.license_id)
                THEN r.license_id END AS license_id
    FROM temp.discount_redemptions_stash AS r
) AS s
WHERE s.code_id IS NOT NULL OR s.invoice_id IS NOT NULL OR s.license_id IS NOT NULL
ORDER BY s.id;

-- Restore the codes; unlink and disable those whose product or policy is missing.
INSERT INTO discount_codes (rowid, id, code, product_id, policy_id, kind, amount,
                            max_redemptions, expires_at, disabled, note, created_at)
SELECT s.stash_rowid, s.id, s.code,
       CASE WHEN s.product_ok THEN s.product_id END,
       CASE WHEN s.policy_ok THEN s.policy_id END,
       s.kind, s.amount, s.max_redemptions, s.expires_at,
       CASE WHEN s.product_ok AND s.policy_ok THEN s.disabled ELSE 1 END,
       s.note, s.created_at
FROM (
    SELECT c.*,
           (c.product_id IS NULL OR EXISTS
               (SELECT 1 FROM products AS p WHERE p.id = c.product_id)) AS product_ok,
           (c.policy_id IS NULL OR EXISTS
               (SELECT 1 FROM policies AS p WHERE p.id = c.policy_id)) AS policy_ok
    FROM temp.discount_codes_stash AS c
) AS s
ORDER BY s.stash_rowid;

-- Placeholders for codes that redemptions point at but that no longer exist.
INSERT INTO discount_codes (id, code, kind, amount, disabled, note, created_at)
SELECT r.code_id, 'MISSING-' || r.code_id, 'fixed_sats', 0, 1,
       'placeholder made by migration 0009: redemptions referenced this code, which was missing',
       min(r.redeemed_at)
FROM temp.discount_redemptions_stash AS r
WHERE NOT EXISTS (SELECT 1 FROM main.discount_codes AS c WHERE c.id = r.code_id)
GROUP BY r.code_id
ORDER BY r.code_id;

-- Restore the redemptions; a link to a missing invoice or license becomes NULL.
INSERT INTO discount_redemptions (rowid, id, code_id, invoice_id, license_id, buyer_email,
                                  redeemed_at)
SELECT r.stash_rowid, r.id, r.code_id,
       CASE WHEN EXISTS (SELECT 1 FROM invoices AS i WHERE i.id = r.invoice_id)
            THEN r.invoice_id END,
       CASE WHEN EXISTS (SELECT 1 FROM licenses AS l WHERE l.id = r.license_id)
            THEN r.license_id END,
       r.buyer_email, r.redeemed_at
FROM temp.discount_redemptions_stash AS r
ORDER BY r.stash_rowid;

DROP TABLE temp.discount_codes_stash;
DROP TABLE temp.discount_redemptions_stash;
