-- 0013 Keysat's license terms: seconds, grace, unlimited seats, per-license overrides.
--
-- Why: Keysat clients describe a policy's duration and grace in seconds and say
-- "unlimited machines" with max_machines = 0; issuing may override a policy's seats,
-- grace, trial flag and entitlements for one license and records the buyer's email;
-- a suspension keeps its reason. Before this, those fields were dropped silently.
--
-- policies.duration_seconds replaces duration_days (every existing duration is
-- carried over, days x 86400, and duration_days is cleared so there is one truth;
-- the down file restores it). policies.max_machines keeps its CHECK (>= 1), so
-- "unlimited" is its own flag. licenses.max_machines / grace_seconds are NULL
-- unless the license overrides its policy (0 seats = unlimited).

ALTER TABLE policies ADD COLUMN duration_seconds INTEGER
    CHECK (duration_seconds IS NULL OR duration_seconds > 0);
ALTER TABLE policies ADD COLUMN grace_seconds INTEGER NOT NULL DEFAULT 0
    CHECK (grace_seconds >= 0);
ALTER TABLE policies ADD COLUMN unlimited_machines INTEGER NOT NULL DEFAULT 0
    CHECK (unlimited_machines IN (0, 1));

UPDATE policies
SET duration_seconds = duration_days * 86400, duration_days = NULL
WHERE duration_days IS NOT NULL;

ALTER TABLE licenses ADD COLUMN max_machines INTEGER
    CHECK (max_machines IS NULL OR max_machines >= 0);
ALTER TABLE licenses ADD COLUMN grace_seconds INTEGER
    CHECK (grace_seconds IS NULL OR grace_seconds >= 0);
ALTER TABLE licenses ADD COLUMN buyer_email TEXT;
ALTER TABLE licenses ADD COLUMN suspend_reason TEXT;

CREATE INDEX licenses_buyer_email_idx ON licenses (buyer_email COLLATE NOCASE)
    WHERE buyer_email IS NOT NULL;
