-- The audit trail: one row per request, chained with MACs per (chain, lane).

-- The key that MACs audit records is a data key like any other (wrapped by
-- Keeper under the root key); this row says which one.
CREATE TABLE audit_keys (
    id          smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    dek_id      bytea       NOT NULL REFERENCES data_keys (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Each Nexus process writes its own chains (chain_id, random per process,
-- with a few lanes so that concurrent transactions need not queue). Within a
-- chain, seq counts from 1 and each mac covers the previous one. lane -1
-- holds records written while no MAC key was available (SPIKE sealed or not
-- initialised): recorded, not authenticated.
CREATE TABLE audit_log (
    id           bigserial   PRIMARY KEY,
    chain_id     bytea       NOT NULL,
    lane         smallint    NOT NULL,
    seq          bigint      NOT NULL,
    at           timestamptz NOT NULL,
    request_id   text        NOT NULL,
    caller       text        NOT NULL,
    peer         text        NOT NULL,
    procedure    text        NOT NULL,
    target       text        NOT NULL,
    decision     text        NOT NULL,
    reason       text        NOT NULL,
    code         text        NOT NULL,
    duration_us  bigint      NOT NULL,
    mac          bytea,
    UNIQUE (chain_id, lane, seq)
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
COMMENT ON TABLE audit_log IS
    'One record per request; records of a (chain_id, lane) are chained with MACs.';

-- Where a chain continues after old records were pruned: the last pruned
-- record's seq and mac, MACed so that it cannot be moved.
CREATE TABLE audit_checkpoints (
    chain_id    bytea       NOT NULL,
    lane        smallint    NOT NULL,
    seq         bigint      NOT NULL,
    last_mac    bytea       NOT NULL,
    mac         bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, lane)
);
