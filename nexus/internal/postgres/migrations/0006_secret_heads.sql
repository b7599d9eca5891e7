-- Sealed secret heads and idempotency keys.
--
-- Everything SPIKE decides about a secret (current and oldest version, the
-- state, writer and key of each retained version, max_versions,
-- cas_required, custom metadata) is kept in head: sealed by Nexus, bound to
-- the path and to incarnation, a random id made when the secret is created.
-- The plain columns stay as copies for SQL (listing, retention); Nexus
-- compares them with the head on every read and write and reports any
-- disagreement as data loss. A version written after this migration is
-- sealed under a key of its own, kept only in the head: destroying the
-- version deletes the key.
--
-- A migration cannot seal: secrets written before it have no head (NULL)
-- until their next write, which seals one from their rows as they are.
ALTER TABLE secrets
    ADD COLUMN incarnation bytea CHECK (length(incarnation) = 16),
    ADD COLUMN head        bytea,
    ADD CONSTRAINT secrets_head_check CHECK ((head IS NULL) = (incarnation IS NULL));

-- The first outcome of each mutation that carried an Idempotency-Key, so
-- that a retry gets it again instead of applying twice. outcome is what the
-- mutation returned, mac binds it to the caller, key, procedure and request
-- (HMAC under the audit key). Rows are kept for at least 24 hours.
CREATE TABLE idempotency_keys (
    caller        text COLLATE "C" NOT NULL,
    key           text COLLATE "C" NOT NULL,
    request_hash  bytea       NOT NULL CHECK (length(request_hash) = 32),
    outcome       bytea       NOT NULL,
    mac           bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, key)
);
-- Inserted in time order: a BRIN index finds the old ones for pruning at
-- almost no cost per insert.
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys USING brin (created_at);
COMMENT ON TABLE idempotency_keys IS
    'First outcome of each mutation per (caller, Idempotency-Key), MACed; kept for at least 24 hours.';
