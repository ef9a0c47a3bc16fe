-- 0020 indexes for the console's counted, paged lists.
--
-- Why: the console's audit log, machines and licenses lists say how many rows their filters
-- select and page both ways. At a million licenses (1.2 million audit rows, a million
-- machines) counting the audit log by action or by who acted read the whole table (0.5 to
-- 0.8 s), a page of machines sorted every machine by last_seen_at (2 to 10 s), and counting
-- licenses by status read every license (0.6 s). Each is answered on an index here (tens of
-- milliseconds; measured figures in the commit). One more index is written per heartbeat
-- (machines.last_seen_at), a few microseconds.
-- Additive: indexes only, no row changes.

CREATE INDEX audit_log_action_idx ON audit_log (action);
CREATE INDEX audit_log_actor_idx ON audit_log (actor);
CREATE INDEX machines_seen_idx ON machines (last_seen_at);
CREATE INDEX licenses_status_idx ON licenses (status, issued_at);
