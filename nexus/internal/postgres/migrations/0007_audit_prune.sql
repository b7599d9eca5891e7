-- Pruning the audit trail through functions, so that Nexus's serving role
-- needs no UPDATE or DELETE on it (it has only SELECT and INSERT there; see
-- GrantServing). Both functions run with the rights of their owner, the role
-- that ran this migration, and resolve names only in pg_catalog and public
-- (pg_temp last, so a temporary table cannot stand in for a real one).
-- EXECUTE is granted to the serving role by GrantServing, to nobody else.

-- How recent a record may be and still be pruned: even a caller holding
-- Nexus's role cannot erase what just happened. Only the owner changes it
-- (the serving role may read it).
CREATE TABLE audit_settings (
    id             smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    min_prune_age  interval NOT NULL CHECK (min_prune_age >= interval '0')
);
INSERT INTO audit_settings (id, min_prune_age) VALUES (1, interval '1 hour');
COMMENT ON TABLE audit_settings IS
    'min_prune_age: audit records younger than this cannot be pruned; owner-only.';

-- audit_prune_chain writes the checkpoint of one chain (chain_id, lane) at
-- record seq, whose MAC is last_mac, and deletes that chain's records up to
-- seq; it returns how many it deleted. The checkpoint must name a record
-- that is there with that MAC (or repeat the checkpoint already written),
-- and never moves back: a caller can only cut a chain where it really is,
-- and only below records older than audit_settings.min_prune_age.
-- mac, the checkpoint's own MAC, is checked by verification, which needs
-- the MAC key the database never sees.
CREATE FUNCTION audit_prune_chain(p_chain_id bytea, p_lane smallint, p_seq bigint, p_last_mac bytea, p_mac bytea)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    deleted bigint;
BEGIN
    IF p_lane < 0 THEN
        RAISE EXCEPTION 'audit_prune_chain: lane % holds no authenticated records', p_lane
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM public.audit_checkpoints
               WHERE chain_id = p_chain_id AND lane = p_lane AND seq > p_seq) THEN
        RAISE EXCEPTION 'audit_prune_chain: the checkpoint of this chain is past record %', p_seq
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM public.audit_log
               WHERE chain_id = p_chain_id AND lane = p_lane AND seq <= p_seq
                 AND at >= now() - (SELECT min_prune_age FROM public.audit_settings WHERE id = 1)) THEN
        RAISE EXCEPTION 'audit records younger than % cannot be pruned',
            (SELECT min_prune_age FROM public.audit_settings WHERE id = 1)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.audit_log
                   WHERE chain_id = p_chain_id AND lane = p_lane AND seq = p_seq AND mac = p_last_mac)
       AND NOT EXISTS (SELECT 1 FROM public.audit_checkpoints
                       WHERE chain_id = p_chain_id AND lane = p_lane AND seq = p_seq AND last_mac = p_last_mac) THEN
        RAISE EXCEPTION 'audit_prune_chain: no record % with that MAC in this chain', p_seq
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO public.audit_checkpoints (chain_id, lane, seq, last_mac, mac)
    VALUES (p_chain_id, p_lane, p_seq, p_last_mac, p_mac)
    ON CONFLICT (chain_id, lane) DO UPDATE
    SET seq = EXCLUDED.seq, last_mac = EXCLUDED.last_mac, mac = EXCLUDED.mac, created_at = now();
    DELETE FROM public.audit_log WHERE chain_id = p_chain_id AND lane = p_lane AND seq <= p_seq;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;

-- audit_prune_unauthenticated deletes the records written while no MAC key
-- was available (lane < 0) that are older than before, and returns how
-- many it deleted; before must be at least audit_settings.min_prune_age
-- ago. Authenticated records are never touched.
CREATE FUNCTION audit_prune_unauthenticated(p_before timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    deleted bigint;
BEGIN
    IF p_before > now() - (SELECT min_prune_age FROM public.audit_settings WHERE id = 1) THEN
        RAISE EXCEPTION 'audit records younger than % cannot be pruned',
            (SELECT min_prune_age FROM public.audit_settings WHERE id = 1)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM public.audit_log WHERE lane < 0 AND at < p_before;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;

REVOKE ALL ON FUNCTION audit_prune_chain(bytea, smallint, bigint, bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_prune_unauthenticated(timestamptz) FROM PUBLIC;
