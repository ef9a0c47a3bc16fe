-- 0012 one index over each license's machines and their state.
--
-- Why: deactivation keeps the machine row for the admin's history (0006), and a
-- client that activates and deactivates new fingerprints in a loop grew the table
-- without bound. The daemon now keeps the most recent deactivated machines of each
-- license and deletes older ones in the transaction that deactivates another; it
-- finds them on this index, in that license's history alone. Seats (active
-- machines) are counted on the same index without reading the table: the partial
-- index of 0006 lacks deactivated_at, so counting on it read every active row,
-- which made claiming a seat cost time in proportion to the seats in use.

CREATE INDEX machines_license_state_idx ON machines (license_id, deactivated_at);
DROP INDEX machines_active_idx;
