-- 0004 licenses remember their trial flag and entitlements.
--
-- Why: a key's payload carries a trial flag and entitlement slugs, signed at
-- issue time. Later edits to the policy must not change what an already
-- issued license grants, so the license keeps its own copy. Backfill: a
-- license issued under a policy takes that policy's values as they are now
-- (the closest record of what its key carries). Licenses without a policy
-- keep the defaults (not a trial, no entitlements).

ALTER TABLE licenses ADD COLUMN is_trial INTEGER NOT NULL DEFAULT 0 CHECK (is_trial IN (0, 1));
ALTER TABLE licenses ADD COLUMN entitlements TEXT NOT NULL DEFAULT '[]'
    CHECK (json_valid(entitlements) AND json_type(entitlements) = 'array');

UPDATE licenses
SET is_trial = (SELECT p.is_trial FROM policies AS p WHERE p.id = licenses.policy_id),
    entitlements = (SELECT p.entitlements FROM policies AS p WHERE p.id = licenses.policy_id)
WHERE policy_id IS NOT NULL;
