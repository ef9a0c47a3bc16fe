-- 0008 lookup indexes on discount redemptions.
--
-- Why: the admin license page shows which code a license came from, and the
-- purchase flow finds an invoice's redemption; both scanned the whole table.
-- Note for 0009: it rebuilds discount_redemptions and must recreate these.

CREATE INDEX discount_redemptions_license_idx ON discount_redemptions (license_id);
CREATE INDEX discount_redemptions_invoice_idx ON discount_redemptions (invoice_id);
