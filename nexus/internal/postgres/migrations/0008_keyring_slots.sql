-- The root keyring in format 2: one keyring key wrapped in a slot per
-- credential (the admin password, Shamir shares of an unseal key), the
-- root keys sealed under it, and an epoch that a rekey raises. Keeper
-- authenticates all of it; epoch here is a copy for operators and for the
-- compare-and-set of a rekey, never trusted. A keyring stored before this
-- migration keeps kdf_params and ciphertext (format 1) and sealed NULL;
-- the first rekey moves it to format 2 and empties the format 1 columns,
-- so the old password opens no copy left in the row.
ALTER TABLE root_keyrings
    ADD COLUMN sealed bytea,
    ADD COLUMN epoch  bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0);
ALTER TABLE root_keyrings
    ADD CONSTRAINT root_keyrings_one_format CHECK (
        (sealed IS NULL AND epoch = 0 AND length(ciphertext) > 0)
        OR (sealed IS NOT NULL AND epoch > 0 AND length(kdf_params) = 0 AND length(ciphertext) = 0));
COMMENT ON TABLE root_keyrings IS
    'The root keyring sealed by Keeper: format 1 (kdf_params, ciphertext: password only) or format 2 (sealed: password and/or shares slots, epoch); at most one row.';
