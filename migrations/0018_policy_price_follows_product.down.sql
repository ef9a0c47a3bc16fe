-- 0018 down: the flag goes (the schema 0017 knows). The older schema has no "follow the
-- product": each policy that follows takes its product's current price (sats, currency and
-- value) as its own, the price it sells at at the moment of the downgrade; a later change of
-- the product's price no longer reaches it.
--
-- discards: which policies follow their product's price (each keeps the product's current price)

UPDATE policies
SET price_sats = (SELECT price_sats FROM products WHERE products.id = policies.product_id),
    price_currency = (SELECT price_currency FROM products WHERE products.id = policies.product_id),
    price_minor = (SELECT price_minor FROM products WHERE products.id = policies.product_id)
WHERE price_follows_product = 1;

ALTER TABLE policies DROP COLUMN price_follows_product;
