-- t/citus_upgrade/provider_connections--1.6--1.7-dml.sql: for
-- t/citus_faults.py only. A backfill (UPDATE of a distributed table) in an
-- upgrade script: the coordinator runs it across the shards, then each
-- worker's run of the propagated ALTER EXTENSION tries it again as a
-- distributed query inside a command the coordinator sent, which Citus
-- refuses ("cannot execute a distributed query from a query on a shard"):
-- the update rolls back on every node.
\echo Use "ALTER EXTENSION provider_connections UPDATE TO '1.7-dml'" to load this file. \quit

UPDATE @extschema@.provider_connections SET probe_note = 'backfilled' WHERE probe_note IS NULL;
