-- A version row's data key is no longer a foreign key. Every put checked
-- it by locking the data key's row FOR KEY SHARE, and every put names the
-- same key: concurrent puts shared that lock through a MultiXact, which
-- PostgreSQL rebuilds (and logs) with each new sharer, on one hot row.
-- Heads, policies, tokens and custom metadata name their data keys without
-- a foreign key already; what keeps a named key is RetireDataKeys, which
-- deletes only keys that nothing names and that are older than any write
-- seals with (RetireAfter). A version's value opens with its own key from
-- the sealed head; dek_id must match the key id in its sealed bytes (and
-- names the key that opens it only for versions older than heads). The
-- index on dek_id stays: it serves RetireDataKeys and rewrap.
-- A Nexus of schema 11 reads and writes the table the same way, and
-- nothing it does depends on the constraint.
-- serves-from: 11
--
-- Dropping it locks secret_versions: behind a running backup (one long
-- transaction) that would hold every get and put. Wait 5 s at most; the
-- migration then fails and can be run again.
SET LOCAL lock_timeout = '5s';
ALTER TABLE secret_versions DROP CONSTRAINT secret_versions_dek_id_fkey;
