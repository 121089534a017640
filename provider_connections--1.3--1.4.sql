/*
 * provider_connections--1.3--1.4.sql
 *
 * 1.3 to 1.4. A fresh CREATE EXTENSION of 1.4 runs provider_connections--1.3.sql
 * and then this script, so this file is also the only definition of what
 * 1.4 adds; sql/upgrade.sql checks that an install updated from 1.0 ends up
 * defined exactly as a fresh one.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
\echo Use "ALTER EXTENSION provider_connections UPDATE TO '1.4'" to load this file. \quit

/*
 * provider_key_status(): per key id, how many stored credentials of this
 * database it seals and whether it is the configured current or previous
 * key, so that a rotation is known to be done in every database before the
 * previous key is removed. Superuser only (checked in C too), like
 * provider_rotate_credentials: not SECURITY DEFINER.
 */
CREATE FUNCTION @extschema@.provider_key_status(
    OUT key_id text,
    OUT role text,
    OUT credentials bigint)
    RETURNS SETOF record
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_key_status';

REVOKE ALL ON FUNCTION @extschema@.provider_key_status() FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.provider_key_status() IS
    'superuser: per key id (8 hex digits), its role (current, previous or unknown) and how many stored credentials of this database it seals';
