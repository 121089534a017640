/*
 * provider_connections--1.1--1.2.sql
 *
 * 1.2: feed positions assigned after the writers commit (src/feed.c), by a
 * background worker or by provider_events_since itself, instead of at each
 * caller's commit under the cluster-wide NOTIFY lock; a CHECK on
 * credential_type; the redundant index on user_id dropped; every object
 * described in the catalog.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
\echo Use "ALTER EXTENSION provider_connections UPDATE TO '1.2'" to load this file. \quit

-- (user_id, provider_id) serves every lookup by user_id alone too.
DROP INDEX @extschema@.provider_connections_user_idx;

CREATE FUNCTION @extschema@.provider_credential_type_valid(credential_type text)
    RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'provider_credential_type_valid';
-- Left executable by PUBLIC: it is harmless, and a CHECK runs it as whoever writes.
ALTER TABLE @extschema@.provider_connections
    ADD CONSTRAINT provider_connections_credential_type_check
    CHECK (@extschema@.provider_credential_type_valid(credential_type));

/*
 * Each audit row carries the top-level transaction that wrote it; rows
 * written before 1.2 have NULL and already have their positions (rows the
 * 1.2 library wrote while the schema was still 1.1 get theirs from the
 * first round, which numbers every row without a position).
 */
ALTER TABLE @extschema@.provider_audit_log ADD COLUMN xid xid8;
CREATE INDEX provider_audit_log_xid_idx ON @extschema@.provider_audit_log (xid);

CREATE TABLE @extschema@.provider_feed_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_xmax xid8,
    last_xip  xid8[]
);
-- Not registered with pg_extension_config_dump: xids mean nothing in another
-- cluster, so a restored database starts with a first round.
INSERT INTO @extschema@.provider_feed_state DEFAULT VALUES;
REVOKE ALL ON TABLE @extschema@.provider_feed_state FROM PUBLIC;

CREATE FUNCTION @extschema@.provider_feed_assign()
    RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'provider_feed_assign';
REVOKE ALL ON FUNCTION @extschema@.provider_feed_assign() FROM PUBLIC;

/* The feed now makes sure what committed before the call is numbered. */
CREATE OR REPLACE FUNCTION @extschema@.provider_events_since(
    after_position bigint,
    max_events     integer DEFAULT 1000)
    RETURNS TABLE (
        global_position   bigint,
        audit_id          bigint,
        event_id          uuid,
        event_type        text,
        action            text,
        user_id           uuid,
        connection_id     uuid,
        provider_id       uuid,
        provider_slug     text,
        reason            text,
        needs_user_action boolean,
        occurred_at       timestamptz,
        context           jsonb)
    LANGUAGE sql VOLATILE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    -- Planned without knowing max_events, a page looks like a tenth of the
    -- log: on a large log that meant JIT compilation and parallel workers on
    -- every call (70 ms for a page of 100 at 400,000 rows).
    SET jit = off
    SET max_parallel_workers_per_gather = 0
    AS $$
        SELECT @extschema@.provider_feed_assign();
        -- A page of positions by their index, then each one's audit row by
        -- its key (OFFSET 0 keeps that a lookup per row): planned without
        -- knowing max_events, a join would scan the whole log for a page.
        SELECT p.global_position, a.id, a.event_id, a.event_type, a.action, a.user_id,
               a.connection_id, a.provider_id, a.provider_slug, a.reason,
               a.needs_user_action, a.occurred_at, a.context
          FROM (SELECT pp.global_position, pp.audit_id
                  FROM @extschema@.provider_event_positions pp
                 WHERE pp.global_position OPERATOR(pg_catalog.>) after_position
                 ORDER BY pp.global_position
                 LIMIT max_events) p
         CROSS JOIN LATERAL (SELECT * FROM @extschema@.provider_audit_log aa
                              WHERE aa.id OPERATOR(pg_catalog.=) p.audit_id
                             OFFSET 0) a
         ORDER BY p.global_position
    $$;

/* Described in the catalog, so \d+ and \df+ explain every object. */
COMMENT ON TYPE @extschema@.provider_connection_status IS
    'status of a provider connection; transitions are checked by provider_connections_guard';
COMMENT ON TYPE @extschema@.provider_result IS
    'result of a command: ok, the connection id, and error_code with its message when ok is false';
COMMENT ON TABLE @extschema@.provider_connections IS
    'one row per user and provider connection; status changes are checked by the provider_connections_guard trigger';
COMMENT ON COLUMN @extschema@.provider_connections.id IS 'connection id (UUIDv7, time-ordered)';
COMMENT ON COLUMN @extschema@.provider_connections.user_id IS 'the user who owns the connection; never changes';
COMMENT ON COLUMN @extschema@.provider_connections.provider_id IS 'the provider connected to; never changes';
COMMENT ON COLUMN @extschema@.provider_connections.provider_slug IS 'the provider''s short name, at most 50 characters';
COMMENT ON COLUMN @extschema@.provider_connections.status IS 'pending, active, expired, revoked, failed or disconnected (terminal)';
COMMENT ON COLUMN @extschema@.provider_connections.alias IS 'the user''s name for the connection, at most 100 characters';
COMMENT ON COLUMN @extschema@.provider_connections.credential_type IS 'oauth2, api_key, link_token, certificate, file_import or custom; NULL once disconnected';
COMMENT ON COLUMN @extschema@.provider_connections.encrypted_credentials IS
    'credentials sealed with pgcrypto under the key of provider_connections.encryption_key_file; read them with provider_credentials()';
COMMENT ON COLUMN @extschema@.provider_connections.credentials_expires_at IS 'when the credentials expire; NULL: they do not';
COMMENT ON COLUMN @extschema@.provider_connections.connected_at IS 'when the connection first became active';
COMMENT ON COLUMN @extschema@.provider_connections.last_sync_at IS 'when data was last synchronised from the provider';
COMMENT ON COLUMN @extschema@.provider_connections.created_at IS 'when the row was created; never changes';
COMMENT ON COLUMN @extschema@.provider_connections.updated_at IS 'when a command last changed the row';
COMMENT ON TABLE @extschema@.provider_audit_log IS
    'append-only trail: an Attempted row and exactly one Succeeded or Failed row per command call';
COMMENT ON COLUMN @extschema@.provider_audit_log.id IS 'audit id, increasing in write order (not commit order: read the feed for that)';
COMMENT ON COLUMN @extschema@.provider_audit_log.event_id IS 'event id (UUIDv7), also in the notification payload';
COMMENT ON COLUMN @extschema@.provider_audit_log.event_type IS 'e.g. ProviderConnectionSucceeded; see README, "Tables"';
COMMENT ON COLUMN @extschema@.provider_audit_log.action IS 'e.g. provider_connected; see README, "Tables"';
COMMENT ON COLUMN @extschema@.provider_audit_log.user_id IS 'the user, NULL when not known';
COMMENT ON COLUMN @extschema@.provider_audit_log.connection_id IS 'the connection, NULL when not known';
COMMENT ON COLUMN @extschema@.provider_audit_log.provider_id IS 'the provider, NULL when not known';
COMMENT ON COLUMN @extschema@.provider_audit_log.provider_slug IS 'the provider slug as given (clipped to 200 bytes)';
COMMENT ON COLUMN @extschema@.provider_audit_log.reason IS 'why a Failed event failed (clipped to 800 bytes)';
COMMENT ON COLUMN @extschema@.provider_audit_log.needs_user_action IS 'on ProviderTokenRefreshFailed: the user must connect again';
COMMENT ON COLUMN @extschema@.provider_audit_log.occurred_at IS 'when the event was written';
COMMENT ON COLUMN @extschema@.provider_audit_log.context IS 'who called: current_user, session_user, application_name, backend_pid, transaction_id';
COMMENT ON COLUMN @extschema@.provider_audit_log.xid IS 'the writing top-level transaction, by which the feed finds the row once committed';
COMMENT ON SEQUENCE @extschema@.provider_audit_log_id_seq IS 'numbers audit rows in write order';
COMMENT ON SEQUENCE @extschema@.provider_event_position_seq IS 'numbers feed positions, in commit order, as rounds assign them';
COMMENT ON TABLE @extschema@.provider_event_positions IS
    'commit-ordered position of each audit row, assigned after its transaction committed; read it through provider_events_since()';
COMMENT ON COLUMN @extschema@.provider_event_positions.global_position IS 'feed position: a reader that sees one sees every smaller one';
COMMENT ON COLUMN @extschema@.provider_event_positions.audit_id IS 'the audit row at this position';
COMMENT ON TABLE @extschema@.provider_feed_state IS
    'what the last feed assignment round could not see yet (its snapshot''s xmax and in-progress xids); not dumped';
COMMENT ON FUNCTION @extschema@.provider_connect(uuid, uuid, text, bytea, text, timestamptz, text) IS
    'create an active connection holding sealed credentials; returns a provider_result';
COMMENT ON FUNCTION @extschema@.provider_disconnect(uuid, uuid) IS
    'the owner ends a connection: disconnected, credentials cleared; returns a provider_result';
COMMENT ON FUNCTION @extschema@.provider_refresh_tokens(uuid, bytea, timestamptz, text) IS
    'replace an active connection''s credentials; returns a provider_result';
COMMENT ON FUNCTION @extschema@.provider_credentials(uuid) IS
    'the decrypted credentials of a connection; NULL when it holds none';
COMMENT ON FUNCTION @extschema@.provider_events_since(bigint, integer) IS
    'committed events after a feed position, in position order, at most max_events';
COMMENT ON FUNCTION @extschema@.provider_rotate_credentials(integer) IS
    'superuser: re-seal up to batch_size credentials under the current key; remaining is NULL after a full batch';
COMMENT ON FUNCTION @extschema@.provider_feed_assign() IS
    'internal: number the events committed before this call (called by provider_events_since)';
COMMENT ON FUNCTION @extschema@.provider_credential_type_valid(text) IS
    'whether a credential type is one of the six known ones (the table''s CHECK)';
COMMENT ON FUNCTION @extschema@.provider_connections_guard() IS
    'trigger: the status state machine and the credentials invariants on every INSERT and UPDATE';
COMMENT ON FUNCTION @extschema@.provider_audit_log_append_only() IS
    'trigger: refuses UPDATE, DELETE and TRUNCATE on the audit log and the feed positions';
