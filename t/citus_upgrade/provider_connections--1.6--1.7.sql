-- t/citus_upgrade/provider_connections--1.6--1.7.sql: for t/citus_faults.py
-- only. The index of the 1.7-index script as a script of that one statement
-- (IF NOT EXISTS, as the workers run it again): it goes through.
\echo Use "ALTER EXTENSION provider_connections UPDATE TO '1.7'" to load this file. \quit

CREATE INDEX IF NOT EXISTS provider_connections_probe_idx ON @extschema@.provider_connections (provider_slug);
