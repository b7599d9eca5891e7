-- The policy manifest: which policy rows are current.
--
-- A policy row is sealed and bound to its name, so it cannot be forged or
-- moved to another name; but a row deleted through SPIKE and inserted again
-- with SQL would still open. The manifest closes that gap: it holds, sealed
-- by Nexus, the policy generation and the SHA-256 of every current policy
-- row's sealed bytes, and every policy change rewrites it in the same
-- transaction. A row whose hash is not listed grants nothing.
--
-- A migration cannot seal, so the row is created by the first policy change
-- after this migration; until then Nexus accepts the policy rows that open,
-- as before.
CREATE TABLE policy_manifest (
    id          smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    sealed      bytea       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE policy_manifest IS
    'Sealed list of the current policy rows (generation, name -> SHA-256 of the sealed row).';
