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
 * No write path without a trail: the guard also fires on DELETE, recording
 * each deleted connection as a ProviderConnectionDeleted event, and refuses
 * TRUNCATE, which could record nothing.
 */
DROP TRIGGER provider_connections_guard ON @extschema@.provider_connections;
CREATE TRIGGER provider_connections_guard
    BEFORE INSERT OR UPDATE OR DELETE ON @extschema@.provider_connections
    FOR EACH ROW EXECUTE FUNCTION @extschema@.provider_connections_guard();
CREATE TRIGGER provider_connections_no_truncate
    BEFORE TRUNCATE ON @extschema@.provider_connections
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.provider_connections_guard();
ALTER TABLE @extschema@.provider_connections
    ENABLE ALWAYS TRIGGER provider_connections_guard;
ALTER TABLE @extschema@.provider_connections
    ENABLE ALWAYS TRIGGER provider_connections_no_truncate;
COMMENT ON FUNCTION @extschema@.provider_connections_guard() IS
    'trigger: the status state machine and the credentials invariants on every INSERT and UPDATE; records direct status changes and deletions, refuses TRUNCATE';
