-- 0017 down: the column goes (the schema 0016 knows). A policy's metadata has no place in the
-- older schema; each policy whose metadata was not empty gets one audit_log row
-- ('migration.0017.down') holding it, so the seller can read it back.
--
-- discards: policies' metadata (kept in the audit log)

INSERT INTO audit_log (created_at, actor, action, subject, detail)
SELECT CAST(strftime('%s', 'now') AS INTEGER), 'system', 'migration.0017.down',
       'policy:' || id, json_object('metadata', json(metadata))
FROM policies
WHERE metadata <> '{}'
ORDER BY id;

ALTER TABLE policies DROP COLUMN metadata;
