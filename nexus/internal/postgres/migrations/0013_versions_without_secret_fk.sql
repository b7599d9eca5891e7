-- A version row's secret is no longer a foreign key either. The key was
-- checked on every put, through a query that locked the secret's row FOR
-- KEY SHARE (a row the put had locked FOR UPDATE already): a fifth of the
-- put's statement inside PostgreSQL (docs/performance.md). Nexus inserts a
-- version only in the statement that writes its secret's row (the row it
-- reads is that write's RETURNING); a restore loads version rows only from
-- a backup whose MACs check. A version row without its secret (left by SQL
-- outside SPIKE, such as a TRUNCATE of secrets alone, which no longer
-- fails) is reported as tampering by Nexus, as it was before.
--
-- What the key still did, removing a secret's versions with the secret,
-- is a trigger now: a Nexus of schema 12 removes a secret the way it did
-- (one DELETE on secrets), and its versions still go with it. The trigger
-- runs after the statement's DELETE, with a snapshot of its own, so it
-- also removes versions that a put committed while the DELETE waited for
-- the secret's row. It runs as the role that deletes (Nexus's serving
-- role may delete versions already) and resolves names only in pg_catalog
-- and public.
-- serves-from: 12
--
-- Both steps lock the tables they change; wait 5 s at most (see 0012).
SET LOCAL lock_timeout = '5s';
CREATE FUNCTION secret_versions_follow_secret() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    DELETE FROM public.secret_versions WHERE path = OLD.path;
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION secret_versions_follow_secret() FROM PUBLIC;
CREATE TRIGGER secrets_delete_versions AFTER DELETE ON secrets
    FOR EACH ROW EXECUTE FUNCTION secret_versions_follow_secret();
ALTER TABLE secret_versions DROP CONSTRAINT secret_versions_path_fkey;
