-- t/citus_upgrade/provider_connections--1.5--1.6.sql: for t/citus_faults.py
-- only. The same change as the 1.6-alter script, written so that it runs
-- both where the coordinator runs it (and Citus propagates the ALTER TABLE
-- to every shard and worker table) and where a worker runs it again (the
-- propagated ALTER EXTENSION), where it must then do nothing.
\echo Use "ALTER EXTENSION provider_connections UPDATE TO '1.6'" to load this file. \quit

ALTER TABLE @extschema@.provider_connections ADD COLUMN IF NOT EXISTS probe_note text;
