-- 0014 down: no scoped API keys, no webhooks.
--
-- The exact inverse of 0014_api_keys_and_webhooks.up.sql. The older schema has no place for
-- API keys or webhooks: they are dropped with their tables (the master admin key keeps
-- working; the audit log keeps who created and revoked what).
-- discards: scoped API keys, webhook endpoints and their events, deliveries and delivery log

DROP INDEX webhook_attempts_delivery_idx;
DROP TABLE webhook_attempts;
DROP INDEX webhook_deliveries_pending_idx;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_events;
DROP TABLE webhook_endpoints;
DROP TABLE api_keys;
