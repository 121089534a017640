-- t/citus_upgrade/provider_connections--1.4--1.5.sql: a version 1.5 that
-- exists only for t/citus_faults.py (scripts/citus_test.sh copies it into
-- the private PostgreSQL's extension directory for the run, and removes it
-- after; the real control file stays at 1.4). It does what an upgrade that
-- a distributed install can take does: a comment, a new SQL function that
-- reads a distributed table, a new C function, a replaced function body.
-- No DDL on the distributed tables (see provider_connections--1.5--1.6-alter.sql).
\echo Use "ALTER EXTENSION provider_connections UPDATE TO '1.5'" to load this file. \quit

COMMENT ON FUNCTION @extschema@.provider_distributed() IS
    'whether Citus distributes the extension''s tables in this database (test version 1.5)';

CREATE FUNCTION @extschema@.provider_user_connection_count(p_user_id uuid)
    RETURNS bigint
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT count(*) FROM @extschema@.provider_connections WHERE user_id = p_user_id $$;

CREATE FUNCTION @extschema@.provider_distributed_v15()
    RETURNS boolean
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'provider_distributed';
