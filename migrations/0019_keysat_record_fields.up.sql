-- 0019 Keysat's record fields: when codes and policies changed, when a policy was archived,
-- a license's fingerprint, bound identity, metadata and Nostr npub, when an API key was last
-- used, and Keysat's fifth API-key role, `merchant-onboard`.
--
-- Why: Keysat answers these fields (its models.rs License, Policy, DiscountCode) and its
-- admin issue takes `nostr_npub` (searchable with `?nostr_npub=`); a script written against
-- Keysat reads them. Keysat's `merchant-onboard` role (api_keys.rs) grants every read and
-- product, policy and license writes; the CHECK on api_keys.role must widen to store it.
--
-- Existing rows, from what is recorded:
--   * a code's (its terms row's) and a policy's updated_at: its last audited change, else its creation;
--   * an inactive (archived) policy's archived_at: its last audited change, else creation;
--   * licenses: no fingerprint, identity or npub was ever stored; metadata is {}.
-- api_keys is rebuilt (a CHECK cannot be altered in place); nothing references it. Additive
-- otherwise and NOT idempotent (ADD COLUMN).

-- A code's updated_at lives in its terms row (0016): a rerun of 0009 rebuilds discount_codes
-- with its own column list and would drop a column added there. A code without a terms row
-- (never edited since 0016) reads its creation time.
ALTER TABLE discount_code_terms ADD COLUMN updated_at INTEGER;
UPDATE discount_code_terms SET updated_at = COALESCE(
    (SELECT max(a.created_at) FROM audit_log AS a
     WHERE a.subject = 'discount_code:' || discount_code_terms.code_id),
    (SELECT c.created_at FROM discount_codes AS c WHERE c.id = discount_code_terms.code_id));

ALTER TABLE policies ADD COLUMN updated_at INTEGER;
ALTER TABLE policies ADD COLUMN archived_at INTEGER;
UPDATE policies SET updated_at = COALESCE(
    (SELECT max(a.created_at) FROM audit_log AS a WHERE a.subject = 'policy:' || policies.id),
    created_at);
UPDATE policies SET archived_at = updated_at WHERE active = 0;

-- The machine fingerprint a license was issued bound to (as the seller sent it).
ALTER TABLE licenses ADD COLUMN fingerprint TEXT;
-- Keysat's user identity locked to a license; Keysat itself never writes it.
ALTER TABLE licenses ADD COLUMN bound_identity TEXT;
ALTER TABLE licenses ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'
    CHECK (json_valid(metadata) AND json_type(metadata) = 'object');
ALTER TABLE licenses ADD COLUMN nostr_npub TEXT;
CREATE INDEX licenses_nostr_npub_idx ON licenses (nostr_npub) WHERE nostr_npub IS NOT NULL;

CREATE TEMP TABLE api_keys_0018 AS SELECT * FROM api_keys;
DROP TABLE api_keys;
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    role TEXT NOT NULL
        CHECK (role IN ('read-only', 'license-issuer', 'support', 'merchant-onboard',
                        'full-admin')),
    scopes TEXT NOT NULL DEFAULT '[]',
    token_hash TEXT NOT NULL UNIQUE,
    token_prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    -- Written at most once a minute per key (daemon.licensing.access.LAST_USED_EVERY).
    last_used_at INTEGER
);
INSERT INTO api_keys (id, label, role, scopes, token_hash, token_prefix, created_at, revoked_at)
SELECT id, label, role, scopes, token_hash, token_prefix, created_at, revoked_at
FROM api_keys_0018 ORDER BY rowid;
DROP TABLE api_keys_0018;
