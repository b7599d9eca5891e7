-- The change log that WatchSecrets reads: one row per committed change to a
-- secret, written by the change's own statement (never by a second round
-- trip, never with NOTIFY). Each row is stamped with the writing
-- transaction's id (xid8); a reader takes only rows of transactions older
-- than its snapshot's xmin, which have all ended, so that rows are read in
-- (xid, id) order without gaps or repeats whichever Nexus wrote them.
--
-- The rows are plain and not authenticated: Nexus checks each against the
-- secret's sealed head before it sends anything, and reads data only
-- through the normal authenticated path. They are not backed up (a restore
-- goes into a fresh database, with an identity of its own).
--
-- A Nexus of schema 9 ignores both tables and writes no rows here: while
-- it serves (a rolling upgrade), watchers do not see its writes.
-- serves-from: 9
CREATE TABLE secret_changes (
    id          bigserial PRIMARY KEY,
    xid         xid8 NOT NULL,
    path        text NOT NULL,
    kind        smallint NOT NULL,
    versions    bigint[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX secret_changes_xid_id ON secret_changes (xid, id);
CREATE INDEX secret_changes_created_at ON secret_changes (created_at);

-- One row: this database's change-log identity, random, made with the
-- table, so that a cursor from another database (a restore into a fresh
-- cluster) is refused instead of silently missing changes; and the highest
-- transaction id whose rows were pruned, so that a cursor older than the
-- retained log is refused.
CREATE TABLE watch_state (
    id          smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    identity    uuid NOT NULL,
    pruned_xid  xid8 NOT NULL
);
INSERT INTO watch_state (id, identity, pruned_xid) VALUES (1, gen_random_uuid(), '0');
