-- Restore (spike operator restore) loads a backup as Nexus's serving role,
-- which may not insert audit checkpoints (they decide what a prune may cut).
-- This function inserts one, and only into a database that holds no root
-- keyring and no authenticated audit record: a database that was never
-- initialised, where there is no trail to forge a checkpoint for. A restore
-- loads the checkpoints first, in the transaction that then loads the rest.
-- A Nexus of schema 8 ignores the function: it may serve this schema.
-- serves-from: 8
CREATE FUNCTION restore_audit_checkpoint(p_chain_id bytea, p_lane smallint, p_seq bigint,
                                         p_last_mac bytea, p_mac bytea, p_created_at timestamptz)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM public.root_keyrings) OR EXISTS (SELECT 1 FROM public.audit_log WHERE lane >= 0) THEN
        RAISE EXCEPTION 'restore_audit_checkpoint: the database is initialised; checkpoints are restored only into an empty one'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO public.audit_checkpoints (chain_id, lane, seq, last_mac, mac, created_at)
    VALUES (p_chain_id, p_lane, p_seq, p_last_mac, p_mac, p_created_at);
END
$$;

REVOKE ALL ON FUNCTION restore_audit_checkpoint(bytea, smallint, bigint, bytea, bytea, timestamptz) FROM PUBLIC;
