-- 0012 down: the partial index of 0006 back in place of the state index (the schema 0011
-- knows). Machines deleted from the history while 0012 was applied stay deleted: they were
-- deactivated rows beyond the kept history, which no older version reads for validation.
-- discards: nothing (an index is swapped for another)

CREATE INDEX machines_active_idx ON machines (license_id) WHERE deactivated_at IS NULL;
DROP INDEX machines_license_state_idx;
