-- 0016 down: the terms table goes (the schema 0015 knows).
--
-- The older version reads a percent code's whole percent in discount_codes.amount and one
-- policy_id. A code whose terms it cannot express (a percent that is not a whole percent,
-- 0 included, whose column says 1 %, or a scope of several policies, which it would read as "any policy") would take a
-- different amount off, so it is disabled rather than left to sell at the wrong price. Every
-- code that had terms gets one audit_log row ('migration.0016.down') holding them, so the
-- label, the exact percent and the scope are kept there; the seller can read them back and
-- re-enable or recreate the code.
--
-- discards: discount codes' referrer labels, exact basis-point percents and several-policy scopes (kept in the audit log; codes the older version would misread are disabled)

INSERT INTO audit_log (created_at, actor, action, subject, detail)
SELECT CAST(strftime('%s', 'now') AS INTEGER), 'system', 'migration.0016.down',
       'discount_code:' || t.code_id,
       json_object('percent_bps', t.percent_bps, 'referrer_label', t.referrer_label,
                   'policy_ids', json(t.policy_ids),
                   'disabled', COALESCE(t.percent_bps % 100 != 0 OR t.percent_bps = 0, 0)
                               OR json_array_length(t.policy_ids) > 1)
FROM discount_code_terms AS t
WHERE t.referrer_label IS NOT NULL
   OR (t.percent_bps % 100 != 0 OR t.percent_bps = 0)
   OR json_array_length(t.policy_ids) > 1
ORDER BY t.code_id;

UPDATE discount_codes SET disabled = 1
WHERE id IN (SELECT code_id FROM discount_code_terms
             WHERE (percent_bps % 100 != 0 OR percent_bps = 0)
                OR json_array_length(policy_ids) > 1);

DROP TABLE discount_code_terms;
