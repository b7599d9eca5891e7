-- The first schema: the sealed root keyring, wrapped data keys and versioned
-- secrets. Everything secret is sealed by Nexus before it gets here; only the
-- identifiers needed for lookup are stored in the clear.

-- The root keyring sealed under the admin password's key-encryption key. At
-- most one row: its presence means SPIKE is initialised.
CREATE TABLE root_keyrings (
    id          smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    keyring_id  bytea       NOT NULL,
    kdf_params  bytea       NOT NULL,
    ciphertext  bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE root_keyrings IS
    'The root keyring sealed with a key derived from the admin password; at most one row.';

-- Data encryption keys, each wrapped under one version of the root key. Many
-- secret versions share a data key; rotating the root key rewraps only these.
CREATE TABLE data_keys (
    id                bytea       PRIMARY KEY CHECK (length(id) = 16),
    root_key_version  integer     NOT NULL,
    wrapped           bytea       NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    retired_at        timestamptz
);
COMMENT ON TABLE data_keys IS
    'Data encryption keys wrapped under a root key version; retired keys only decrypt.';

-- One row per secret path. current_version is the newest version and is
-- incremented under the row lock, so concurrent writers never share a number.
CREATE TABLE secrets (
    path             text COLLATE "C" PRIMARY KEY,
    current_version  bigint      NOT NULL CHECK (current_version >= 1),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE secrets IS
    'One row per secret path; current_version is the newest version number.';

-- Every version of every secret. sealed is AES-256-GCM under the data key
-- dek_id, bound to (path, version). deleted_at marks a soft delete.
CREATE TABLE secret_versions (
    path        text COLLATE "C" NOT NULL REFERENCES secrets (path) ON DELETE CASCADE,
    version     bigint      NOT NULL CHECK (version >= 1),
    dek_id      bytea       NOT NULL REFERENCES data_keys (id),
    sealed      bytea       NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    PRIMARY KEY (path, version)
);
COMMENT ON TABLE secret_versions IS
    'Every version of every secret, sealed under a data key and bound to (path, version).';

-- Finds the values sealed under a data key (key retirement, rewrapping checks).
CREATE INDEX secret_versions_dek_id_idx ON secret_versions (dek_id);
