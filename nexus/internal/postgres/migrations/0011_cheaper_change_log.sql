-- A cheaper change log: every write of a secret adds a row here, and each
-- index is written with it. Rows are read by (xid, id) (that index stays)
-- and pruned by age; nothing looks a row up by id alone. So the primary
-- key on id goes (id stays unique: it comes from its own sequence), and
-- created_at gets a BRIN index, which rows appended in time order keep
-- nearly free, instead of a B-tree. This cut the WAL of a put by about 110
-- bytes (5.6%) in a pgbench model of the write (docs/performance.md).
-- A Nexus of schema 10 reads and writes the table the same way.
-- serves-from: 10
ALTER TABLE secret_changes DROP CONSTRAINT secret_changes_pkey;
DROP INDEX secret_changes_created_at;
CREATE INDEX secret_changes_created_at ON secret_changes USING brin (created_at);
