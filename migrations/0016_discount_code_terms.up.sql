-- 0016 discount codes gain Keysat's terms: a percent in basis points, a referrer label and a
-- scope of several policies.
--
-- Why a table of its own: 0009 rebuilds discount_codes whenever it runs again (it is on the
-- IDEMPOTENT_MIGRATIONS allowlist), so no later migration may alter that table or add one
-- that references it. These terms therefore live beside it, keyed by the code's id with no
-- REFERENCES clause (the daemon deletes a code's terms with the code). A code without a row
-- here keeps its old meaning: a percent of discount_codes.amount whole percent, no label,
-- its one policy_id. For a percent code the daemon still writes a whole percent into
-- discount_codes.amount (rounded down, at least 1), so that column stays within its CHECK.
--
-- percent_bps: the percent code's amount in basis points (1250 = 12.5 %); NULL for other
-- kinds. policy_ids: a JSON array of the policy ids the code is limited to when it names
-- two or more ('[]' otherwise; one policy stays in discount_codes.policy_id).

CREATE TABLE discount_code_terms (
    code_id        TEXT    PRIMARY KEY,
    percent_bps    INTEGER CHECK (percent_bps IS NULL OR percent_bps BETWEEN 0 AND 10000),
    referrer_label TEXT,
    policy_ids     TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(policy_ids)
                                                        AND json_type(policy_ids) = 'array')
);
