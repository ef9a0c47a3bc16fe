-- 0011 one invoice per payment-provider reference.
--
-- Why: a payment provider's webhook names its own invoice id; looking it up
-- must be fast, and two rows claiming the same provider invoice would issue
-- two licenses for one payment. Free-license invoices have no reference.

CREATE UNIQUE INDEX invoices_provider_ref_idx ON invoices (provider, provider_invoice_id)
    WHERE provider_invoice_id IS NOT NULL;
