-- t/citus_upgrade/provider_connections--1.6--1.7-index.sql: for
-- t/citus_faults.py only. CREATE INDEX on a distributed table in a script of
-- more than one statement: Citus 13.2.2 sends the workers the index command
-- as the statement's source text, which inside an extension script is the
-- whole script, and a worker refuses it ("cannot insert multiple commands
-- into a prepared statement"): the update rolls back on every node.
\echo Use "ALTER EXTENSION provider_connections UPDATE TO '1.7-index'" to load this file. \quit

COMMENT ON FUNCTION @extschema@.provider_distributed() IS
    'whether Citus distributes the extension''s tables in this database (test version 1.7-index)';
CREATE INDEX IF NOT EXISTS provider_connections_probe_idx ON @extschema@.provider_connections (provider_slug);
