-- 0012 an index over each license's deactivated machines.
--
-- Why: deactivation keeps the machine row for the admin's history (0006), and a client
-- that activates and deactivates new fingerprints in a loop grew the table without
-- bound. The daemon now keeps the most recent deactivated machines of each license and
-- deletes older ones in the transaction that deactivates another; this index lets it
-- find them in that license's history alone, without scanning the table. Active machines
-- keep their own partial index (machines_active_idx), on which seats are counted.

CREATE INDEX machines_history_idx ON machines (license_id, deactivated_at)
    WHERE deactivated_at IS NOT NULL;
