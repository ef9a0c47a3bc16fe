-- 0015 down: the indexes go (the schema 0014 knows). Deliveries deleted from the log while
-- 0015 was applied stay deleted: they were settled ones beyond the kept history, which no
-- older version sends again.
-- discards: nothing (only indexes go)

DROP INDEX webhook_deliveries_event_idx;
DROP INDEX webhook_deliveries_settled_idx;
