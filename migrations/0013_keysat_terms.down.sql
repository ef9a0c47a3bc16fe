-- 0013 down: back to days, one seat limit per policy, no per-license overrides.
--
-- The exact inverse of 0013_keysat_terms.up.sql for every row the up file produced.
-- A duration written since in seconds becomes whole days, rounded up (a license is never
-- shortened); an unlimited policy or a per-license override has no place in the older
-- schema and is dropped with its column, as are buyer emails on licenses (invoices keep
-- theirs) and suspension reasons (the audit log keeps them).
-- discards: per-license seat limits and grace periods
-- discards: policies' unlimited seats and grace periods
-- discards: buyer emails on licenses and suspension reasons
-- discards: policy durations finer than a day (rounded up to whole days)

DROP INDEX licenses_buyer_email_idx;

ALTER TABLE licenses DROP COLUMN suspend_reason;
ALTER TABLE licenses DROP COLUMN buyer_email;
ALTER TABLE licenses DROP COLUMN grace_seconds;
ALTER TABLE licenses DROP COLUMN max_machines;

UPDATE policies
SET duration_days = (duration_seconds + 86399) / 86400
WHERE duration_seconds IS NOT NULL;

ALTER TABLE policies DROP COLUMN unlimited_machines;
ALTER TABLE policies DROP COLUMN grace_seconds;
ALTER TABLE policies DROP COLUMN duration_seconds;
