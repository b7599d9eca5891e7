-- Authorization: workload policies and admin tokens.

-- Policies, sealed by Nexus and bound to their name: a row edited or
-- inserted outside SPIKE does not open and grants nothing.
CREATE TABLE policies (
    name        text COLLATE "C" PRIMARY KEY,
    sealed      bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE policies IS
    'Workload policies, sealed and bound to their name.';

-- A counter bumped by every policy change (in the same transaction), so that
-- each Nexus replica can tell that its cached policies are stale. Changes
-- are also announced with NOTIFY spike_policies.
CREATE TABLE policy_generation (
    id          smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    generation  bigint   NOT NULL
);
INSERT INTO policy_generation (id, generation) VALUES (1, 0);

-- Admin tokens, looked up by the SHA-256 of the token. The details (admin
-- SPIFFE ID, expiry, revocation) are sealed and bound to the lookup hash;
-- expires_at and revoked_at are copies in the clear for housekeeping.
CREATE TABLE admin_tokens (
    lookup      bytea       PRIMARY KEY CHECK (length(lookup) = 32),
    sealed      bytea       NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX admin_tokens_expires_at_idx ON admin_tokens (expires_at);
COMMENT ON TABLE admin_tokens IS
    'Admin tokens by SHA-256 lookup hash; details sealed and bound to the hash.';
