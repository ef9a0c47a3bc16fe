-- 0019 down: the schema 0018 knows. A license's fingerprint, bound identity, metadata and
-- Nostr npub have no place there: each license with any of them gets one audit_log row
-- ('migration.0019.down') holding them. merchant-onboard API keys cannot be stored under the
-- older role CHECK: each is named in one such row and deleted (a request with its token is
-- then refused; the master key and the other keys keep working).
--
-- discards: codes' and policies' updated_at, policies' archived_at, API keys' last_used_at,
-- merchant-onboard API keys (named in the audit log); licenses' fingerprint, bound_identity,
-- metadata and nostr_npub (kept in the audit log)

INSERT INTO audit_log (created_at, actor, action, subject, detail)
SELECT CAST(strftime('%s', 'now') AS INTEGER), 'system', 'migration.0019.down',
       'license:' || id,
       json_object('fingerprint', fingerprint, 'bound_identity', bound_identity,
                   'metadata', json(metadata), 'nostr_npub', nostr_npub)
FROM licenses
WHERE fingerprint IS NOT NULL OR bound_identity IS NOT NULL OR metadata <> '{}'
   OR nostr_npub IS NOT NULL
ORDER BY id;

INSERT INTO audit_log (created_at, actor, action, subject, detail)
SELECT CAST(strftime('%s', 'now') AS INTEGER), 'system', 'migration.0019.down',
       'api_key:' || id,
       json_object('deleted', 'merchant-onboard is not a role the older version knows',
                   'label', label, 'role', role, 'revoked_at', revoked_at)
FROM api_keys
WHERE role = 'merchant-onboard'
ORDER BY id;

CREATE TEMP TABLE api_keys_0019 AS
SELECT id, label, role, scopes, token_hash, token_prefix, created_at, revoked_at
FROM api_keys WHERE role <> 'merchant-onboard' ORDER BY rowid;
DROP TABLE api_keys;
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    role TEXT NOT NULL
        CHECK (role IN ('read-only', 'license-issuer', 'support', 'full-admin')),
    scopes TEXT NOT NULL DEFAULT '[]',
    token_hash TEXT NOT NULL UNIQUE,
    token_prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
INSERT INTO api_keys SELECT * FROM api_keys_0019;
DROP TABLE api_keys_0019;

DROP INDEX licenses_nostr_npub_idx;
ALTER TABLE licenses DROP COLUMN nostr_npub;
ALTER TABLE licenses DROP COLUMN metadata;
ALTER TABLE licenses DROP COLUMN bound_identity;
ALTER TABLE licenses DROP COLUMN fingerprint;
ALTER TABLE policies DROP COLUMN archived_at;
ALTER TABLE policies DROP COLUMN updated_at;
ALTER TABLE discount_code_terms DROP COLUMN updated_at;
