-- 0018 a policy without a price override follows its product's price (Keysat's meaning).
--
-- Why: Keysat's policies.price_sats_override is NULL unless the seller set a tier price, and
-- every read then takes the product's current price. Keysmith copied the product's price into
-- the policy at creation, so raising the product's price left such a policy selling at the
-- old one (a 0-sat product raised to 5,000 sats kept issuing free licenses). From here a
-- policy with price_follows_product = 1 is read at its product's price (sats, currency and
-- value); price_sats keeps the product's price at the policy's creation, for the older schema.
--
-- Existing rows, from the audit log (every price edit since 0001 records its fields):
--   * a policy whose price was edited ('policy.*' with 'price_sats' in its fields) was set
--     by the seller: it keeps its price;
--   * a policy at its product's current price (sats, currency and value) follows it (a
--     copy, or the same price: both read the same today);
--   * a policy at another price whose product's price was never edited since the policy was
--     created cannot hold a copy: the difference was set at creation; it keeps its price;
--   * a policy at another price whose product's price was edited since is a copy of an older
--     product price or a price set at creation, and nothing recorded tells which (creation
--     is audited without its price). Its price is kept, the seller's sale price is never
--     changed on a guess, and one audit_log row ('migration.0018.up') names it with both
--     prices, so the seller can clear its override (price_sats_override: null) to follow.
-- Additive and NOT idempotent (ADD COLUMN).

ALTER TABLE policies ADD COLUMN price_follows_product INTEGER NOT NULL DEFAULT 0
    CHECK (price_follows_product IN (0, 1));

CREATE TEMP TABLE policy_price_evidence AS
SELECT pol.id AS id,
       pol.price_sats AS policy_price,
       prod.price_sats AS product_price,
       pol.price_currency = prod.price_currency AND pol.price_minor = prod.price_minor
           AS same_listing,
       EXISTS (
           SELECT 1 FROM audit_log AS a,
                json_each(CASE WHEN json_valid(a.detail) THEN a.detail ELSE '{}' END, '$.fields')
                    AS f
           WHERE a.subject = 'policy:' || pol.id AND a.action LIKE 'policy.%'
             AND f.value = 'price_sats'
       ) AS edited,
       EXISTS (
           SELECT 1 FROM audit_log AS a,
                json_each(CASE WHEN json_valid(a.detail) THEN a.detail ELSE '{}' END, '$.fields')
                    AS f
           WHERE a.subject = 'product:' || prod.id AND a.action LIKE 'product.%'
             AND f.value = 'price_sats' AND a.created_at >= pol.created_at
       ) AS product_changed_since
FROM policies AS pol
JOIN products AS prod ON prod.id = pol.product_id;

UPDATE policies SET price_follows_product = 1
WHERE id IN (
    SELECT id FROM policy_price_evidence
    WHERE NOT edited AND policy_price = product_price AND same_listing
);

INSERT INTO audit_log (created_at, actor, action, subject, detail)
SELECT CAST(strftime('%s', 'now') AS INTEGER), 'system', 'migration.0018.up', 'policy:' || id,
       json_object(
           'kept_price_sats', policy_price,
           'product_price_sats', product_price,
           'why', 'the product''s price changed after this policy was created and nothing '
                  || 'recorded says whether the policy''s price was copied or set; it was kept. '
                  || 'Clear its override (price_sats_override: null) to follow the product'
       )
FROM policy_price_evidence
WHERE NOT edited AND policy_price <> product_price AND product_changed_since
ORDER BY id;

DROP TABLE policy_price_evidence;
