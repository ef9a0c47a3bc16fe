-- 0002 lookup indexes.
--
-- Why: the admin license list filters by product, the purchase poller looks
-- invoices up by product and license, and the audit page reads newest first
-- or by subject. Without these, each of those is a full table scan.

CREATE INDEX licenses_product_idx ON licenses (product_id, issued_at);
CREATE INDEX invoices_product_idx ON invoices (product_id, created_at);
CREATE INDEX invoices_license_idx ON invoices (license_id);
CREATE INDEX audit_log_created_idx ON audit_log (created_at);
CREATE INDEX audit_log_subject_idx ON audit_log (subject, created_at);
