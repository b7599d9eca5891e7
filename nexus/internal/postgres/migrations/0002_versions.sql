-- Versioned secrets engine: per-secret settings, retention, check-and-set,
-- destroy, and sealed custom metadata.

-- oldest_version is the oldest version still stored (0: none yet).
-- max_versions is the secret's retention (0: Nexus's default); versions older
-- than current_version - max + 1 are deleted in the transaction that makes
-- them too old. cas_required makes every write name the version it expects.
-- custom_metadata is sealed by Nexus and bound to the path.
ALTER TABLE secrets
    ADD COLUMN oldest_version  bigint  NOT NULL DEFAULT 0 CHECK (oldest_version >= 0),
    ADD COLUMN max_versions    integer NOT NULL DEFAULT 0 CHECK (max_versions BETWEEN 0 AND 1000),
    ADD COLUMN cas_required    boolean NOT NULL DEFAULT false,
    ADD COLUMN custom_metadata bytea;

-- A secret may exist with settings but no version yet.
ALTER TABLE secrets DROP CONSTRAINT secrets_current_version_check;
ALTER TABLE secrets ADD CONSTRAINT secrets_current_version_check CHECK (current_version >= 0);

UPDATE secrets s
SET oldest_version = COALESCE((SELECT min(v.version) FROM secret_versions v WHERE v.path = s.path), 0);

-- Destroying a version wipes its sealed data; destroyed_at records when.
ALTER TABLE secret_versions
    ALTER COLUMN sealed DROP NOT NULL,
    ADD COLUMN destroyed_at timestamptz,
    ADD CONSTRAINT secret_versions_destroyed_check CHECK ((destroyed_at IS NULL) = (sealed IS NOT NULL));
