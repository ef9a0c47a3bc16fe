-- 0020 down: the list indexes dropped (the schema 0019 knows). Lists and counts answer the
-- same, only slower on a large shop.
-- discards: nothing (indexes only)

DROP INDEX licenses_status_idx;
DROP INDEX machines_seen_idx;
DROP INDEX audit_log_actor_idx;
DROP INDEX audit_log_action_idx;
