-- 0017 policies gain Keysat's metadata: a free-form JSON object the seller attaches.
--
-- Why: Keysat's policy create and edit take `metadata` and answer it; Keysmith refused the
-- field, so a Keysat client that sent it could not create its policy. Existing policies get
-- an empty object. Additive and NOT idempotent (ADD COLUMN); it does not touch
-- discount_codes or discount_redemptions (see 0009).

ALTER TABLE policies ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'
    CHECK (json_valid(metadata) AND json_type(metadata) = 'object');
