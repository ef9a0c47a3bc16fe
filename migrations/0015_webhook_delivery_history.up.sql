-- 0015 indexes to keep the webhook delivery log bounded.
--
-- Why: every event wrote one delivery per subscribed endpoint, with its attempts, and none
-- was ever deleted: a busy shop grew the log (and the database) without bound. The daemon
-- now keeps the most recent settled (delivered or failed) deliveries of each endpoint and
-- deletes older ones, with their attempts and any event no delivery refers to any more, in
-- the transaction that settles another. It finds them on the first index, in that
-- endpoint's log alone; the second finds whether an event still has a delivery. Pending
-- deliveries are never deleted.

CREATE INDEX webhook_deliveries_settled_idx ON webhook_deliveries (endpoint_id, event_id)
    WHERE status != 'pending';
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);
