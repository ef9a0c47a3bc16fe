-- 0006 machine details and soft deactivation.
--
-- Why: activation now records the hostname and platform the client reports,
-- and deactivation keeps the row (deactivated_at, deactivate_reason) instead of
-- deleting it, so the admin can see a machine's history and a re-activation of
-- the same fingerprint reuses its row. Seats are counted over active rows only,
-- hence the partial index.

ALTER TABLE machines ADD COLUMN hostname TEXT;
ALTER TABLE machines ADD COLUMN platform TEXT;
ALTER TABLE machines ADD COLUMN deactivated_at INTEGER;
ALTER TABLE machines ADD COLUMN deactivate_reason TEXT;

CREATE INDEX machines_active_idx ON machines (license_id) WHERE deactivated_at IS NULL;
