-- 0007 storefront display fields for products and policies.
--
-- Why: buyers and in-app tier pickers read GET /v1/products/{slug}/policies.
-- A product declares its entitlements catalog once (JSON array of
-- {slug, name, description}) so tiers can show names, not raw slugs. A policy
-- can be highlighted, ordered (sort_order), and one policy per product can be
-- the default used when a purchase names no policy.

ALTER TABLE products ADD COLUMN entitlements_catalog TEXT NOT NULL DEFAULT '[]'
    CHECK (json_valid(entitlements_catalog) AND json_type(entitlements_catalog) = 'array');
ALTER TABLE policies ADD COLUMN highlighted INTEGER NOT NULL DEFAULT 0
    CHECK (highlighted IN (0, 1));
ALTER TABLE policies ADD COLUMN sort_order INTEGER NOT NULL DEFAULT 0;
ALTER TABLE policies ADD COLUMN is_default INTEGER NOT NULL DEFAULT 0
    CHECK (is_default IN (0, 1));

CREATE UNIQUE INDEX policies_one_default_per_product ON policies (product_id)
    WHERE is_default = 1;
