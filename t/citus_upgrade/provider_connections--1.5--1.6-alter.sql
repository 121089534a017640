-- t/citus_upgrade/provider_connections--1.5--1.6-alter.sql: for
-- t/citus_faults.py only. A plain ALTER TABLE on a distributed table in an
-- upgrade script: on a distributed install the test expects it refused (the
-- coordinator's ALTER TABLE reaches the workers' tables and shards first, then
-- the workers' own run of the script finds the column there) and rolled back
-- on every node.
\echo Use "ALTER EXTENSION provider_connections UPDATE TO '1.6-alter'" to load this file. \quit

ALTER TABLE @extschema@.provider_connections ADD COLUMN probe_note text;
