-- 0014 Scoped API keys and webhooks with a durable outbox.
--
-- Why: a seller's other systems (a shop, a CRM, a support desk) need rights narrower than the
-- master admin key, and need to hear about license and machine changes. An event row is
-- written in the same transaction as the change it reports (webhook_events), fanned out to
-- one delivery per subscribed endpoint (webhook_deliveries), so an event exists if and only
-- if its change committed, and a restart resumes every delivery not yet made. Each attempt
-- is logged (webhook_attempts). API keys store only a SHA-256 of their token.

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    role TEXT NOT NULL
        CHECK (role IN ('read-only', 'license-issuer', 'support', 'full-admin')),
    scopes TEXT NOT NULL DEFAULT '[]',
    token_hash TEXT NOT NULL UNIQUE,
    token_prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    event_types TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    secret TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at INTEGER NOT NULL
);

CREATE TABLE webhook_events (
    id INTEGER PRIMARY KEY,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id INTEGER NOT NULL REFERENCES webhook_events (id),
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER
);

CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (endpoint_id, event_id)
    WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    id INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('delivered', 'retry', 'failed')),
    response_code INTEGER,
    latency_ms INTEGER NOT NULL,
    error TEXT,
    at INTEGER NOT NULL
);

CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id);
