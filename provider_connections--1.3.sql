/*
 * provider_connections--1.3.sql
 *
 * Install script of 1.3: the status type, the connections table and its
 * state machine trigger, the append-only audit log, the event feed whose
 * positions are assigned after commit (src/feed.c), key rotation, the C
 * entry points, and (1.3) the rest of the lifecycle, the overview view,
 * refresh claims and retention. An upgraded database has the same objects
 * (sql/upgrade.sql).
 * Every function runs as the extension owner with a pinned search_path, and
 * nothing is granted to PUBLIC: see README.md, "Security model", for the
 * grants an application role and a worker role need.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
\echo Use "CREATE EXTENSION provider_connections" to load this file. \quit

CREATE TYPE @extschema@.provider_connection_status AS ENUM (
    'pending', 'active', 'expired', 'revoked', 'failed', 'disconnected'
);

CREATE TYPE @extschema@.provider_result AS (
    ok            boolean,
    connection_id uuid,
    error_code    text,
    error         text
);

CREATE FUNCTION @extschema@.provider_credential_type_valid(credential_type text)
    RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'provider_credential_type_valid';
-- Left executable by PUBLIC: it is harmless, and a CHECK runs it as whoever writes.

CREATE TABLE @extschema@.provider_connections (
    id                     uuid PRIMARY KEY,
    user_id                uuid NOT NULL,
    provider_id            uuid NOT NULL,
    provider_slug          varchar(50) NOT NULL,
    status                 @extschema@.provider_connection_status NOT NULL,
    alias                  varchar(100),
    credential_type        text
                           CONSTRAINT provider_connections_credential_type_check
                           CHECK (@extschema@.provider_credential_type_valid(credential_type)),
    encrypted_credentials  bytea,
    credentials_expires_at timestamptz,
    connected_at           timestamptz,
    last_sync_at           timestamptz,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL,
    lease_until            timestamptz
);
CREATE INDEX provider_connections_user_provider_idx
    ON @extschema@.provider_connections (user_id, provider_id);
CREATE INDEX provider_connections_active_user_idx
    ON @extschema@.provider_connections (user_id) WHERE status = 'active';
CREATE INDEX provider_connections_expiring_idx
    ON @extschema@.provider_connections (credentials_expires_at)
    WHERE status = 'active' AND credentials_expires_at IS NOT NULL;

CREATE SEQUENCE @extschema@.provider_audit_log_id_seq AS bigint;

CREATE TABLE @extschema@.provider_audit_log (
    id                bigint PRIMARY KEY
                      DEFAULT pg_catalog.nextval('@extschema@.provider_audit_log_id_seq'),
    event_id          uuid NOT NULL UNIQUE,
    event_type        text NOT NULL,
    action            text NOT NULL,
    user_id           uuid,
    connection_id     uuid,
    provider_id       uuid,
    provider_slug     text,
    reason            text,
    needs_user_action boolean,
    occurred_at       timestamptz NOT NULL,
    context           jsonb NOT NULL,
    xid               xid8,
    call_id           uuid
);
ALTER SEQUENCE @extschema@.provider_audit_log_id_seq
    OWNED BY @extschema@.provider_audit_log.id;

CREATE INDEX provider_audit_log_connection_idx
    ON @extschema@.provider_audit_log (connection_id, id);
CREATE INDEX provider_audit_log_user_idx
    ON @extschema@.provider_audit_log (user_id, id);
CREATE INDEX provider_audit_log_xid_idx
    ON @extschema@.provider_audit_log (xid);

-- pg_dump keeps the rows of extension tables only when told to.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.provider_connections', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.provider_audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.provider_audit_log_id_seq', '');

/*
 * The state machine, on every write path. ENABLE ALWAYS keeps the triggers
 * firing under session_replication_role = replica too.
 */
CREATE FUNCTION @extschema@.provider_connections_guard()
    RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'provider_connections_guard';

CREATE TRIGGER provider_connections_guard
    BEFORE INSERT OR UPDATE ON @extschema@.provider_connections
    FOR EACH ROW EXECUTE FUNCTION @extschema@.provider_connections_guard();
ALTER TABLE @extschema@.provider_connections
    ENABLE ALWAYS TRIGGER provider_connections_guard;

CREATE FUNCTION @extschema@.provider_audit_log_append_only()
    RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'provider_audit_log_append_only';

CREATE TRIGGER provider_audit_log_append_only
    BEFORE UPDATE OR DELETE ON @extschema@.provider_audit_log
    FOR EACH ROW EXECUTE FUNCTION @extschema@.provider_audit_log_append_only();
CREATE TRIGGER provider_audit_log_no_truncate
    BEFORE TRUNCATE ON @extschema@.provider_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.provider_audit_log_append_only();
ALTER TABLE @extschema@.provider_audit_log
    ENABLE ALWAYS TRIGGER provider_audit_log_append_only;
ALTER TABLE @extschema@.provider_audit_log
    ENABLE ALWAYS TRIGGER provider_audit_log_no_truncate;

/* The commands. Business failures come back as a provider_result row. */
CREATE FUNCTION @extschema@.provider_connect(
    user_id         uuid,
    provider_id     uuid,
    provider_slug   text,
    credentials     bytea,
    credential_type text DEFAULT 'oauth2',
    expires_at      timestamptz DEFAULT NULL,
    alias           text DEFAULT NULL,
    connection_id   uuid DEFAULT NULL)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_connect';

CREATE FUNCTION @extschema@.provider_disconnect(
    user_id       uuid,
    connection_id uuid)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_disconnect';

CREATE FUNCTION @extschema@.provider_refresh_tokens(
    connection_id   uuid,
    credentials     bytea,
    expires_at      timestamptz DEFAULT NULL,
    credential_type text DEFAULT NULL)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_refresh_tokens';

CREATE FUNCTION @extschema@.provider_credentials(connection_id uuid)
    RETURNS bytea
    LANGUAGE c STABLE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_credentials';

/* Least privilege: callers get nothing until granted (README, "Security model"). */
REVOKE ALL ON FUNCTION @extschema@.provider_connect(uuid, uuid, text, bytea, text, timestamptz, text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_disconnect(uuid, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_refresh_tokens(uuid, bytea, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_credentials(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_connections_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_audit_log_append_only() FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.provider_connections FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.provider_audit_log FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.provider_audit_log_id_seq FROM PUBLIC;

/* The event feed (1.1; positions assigned after commit since 1.2). */
CREATE SEQUENCE @extschema@.provider_event_position_seq AS bigint;

CREATE TABLE @extschema@.provider_event_positions (
    global_position bigint PRIMARY KEY,
    audit_id        bigint NOT NULL UNIQUE
);

CREATE TRIGGER provider_event_positions_append_only
    BEFORE UPDATE OR DELETE ON @extschema@.provider_event_positions
    FOR EACH ROW EXECUTE FUNCTION @extschema@.provider_audit_log_append_only();
CREATE TRIGGER provider_event_positions_no_truncate
    BEFORE TRUNCATE ON @extschema@.provider_event_positions
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.provider_audit_log_append_only();
ALTER TABLE @extschema@.provider_event_positions
    ENABLE ALWAYS TRIGGER provider_event_positions_append_only;
ALTER TABLE @extschema@.provider_event_positions
    ENABLE ALWAYS TRIGGER provider_event_positions_no_truncate;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.provider_event_positions', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.provider_event_position_seq', '');

/* Superuser-only (checked in C too): not SECURITY DEFINER. */
CREATE FUNCTION @extschema@.provider_rotate_credentials(
    batch_size integer DEFAULT 1000,
    OUT rotated bigint,
    OUT remaining bigint)
    RETURNS record
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_rotate_credentials';

REVOKE ALL ON FUNCTION @extschema@.provider_rotate_credentials(integer) FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.provider_event_positions FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.provider_event_position_seq FROM PUBLIC;

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

/*
 * The feed: audit rows after a position, in position order. A consumer keeps
 * the last global_position it processed (0 at first) and passes it back.
 * It first makes sure what committed before the call is numbered.
 */
CREATE FUNCTION @extschema@.provider_events_since(
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
REVOKE ALL ON FUNCTION @extschema@.provider_events_since(bigint, integer) FROM PUBLIC;

/* 1.3: the rest of the lifecycle, the read side, retention. */
CREATE FUNCTION @extschema@.provider_credential_type_refreshable(credential_type text)
    RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'provider_credential_type_refreshable';
CREATE FUNCTION @extschema@.provider_status_needs_reauthentication(status @extschema@.provider_connection_status)
    RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'provider_status_needs_reauthentication';
-- Both left executable by PUBLIC: harmless, and the overview runs them.

CREATE FUNCTION @extschema@.provider_begin_connect(
    user_id         uuid,
    provider_id     uuid,
    provider_slug   text,
    alias           text DEFAULT NULL,
    credential_type text DEFAULT 'oauth2')
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_begin_connect';

CREATE FUNCTION @extschema@.provider_mark_failed(connection_id uuid, reason text DEFAULT NULL)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_mark_failed';

CREATE FUNCTION @extschema@.provider_mark_expired(connection_id uuid)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_mark_expired';

CREATE FUNCTION @extschema@.provider_mark_revoked(connection_id uuid, reason text DEFAULT NULL)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_mark_revoked';

CREATE FUNCTION @extschema@.provider_record_sync(connection_id uuid)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_record_sync';

CREATE FUNCTION @extschema@.provider_expire_overdue(grace interval DEFAULT '0')
    RETURNS bigint
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_expire_overdue';

/*
 * Refresh workers' queue: active connections with refreshable credentials
 * expiring within the window, soonest first, each leased to the caller so
 * that concurrent callers never get the same one while the lease runs
 * (FOR UPDATE SKIP LOCKED for the claim itself; the lease for after it
 * commits). A successful refresh, or any status change, ends the lease.
 */
CREATE FUNCTION @extschema@.provider_claim_expiring(
    within   interval DEFAULT '5 minutes',
    max_rows integer DEFAULT 100,
    lease    interval DEFAULT '1 minute')
    RETURNS TABLE (
        connection_id          uuid,
        user_id                uuid,
        provider_id            uuid,
        provider_slug          text,
        credential_type        text,
        credentials_expires_at timestamptz)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF within IS NULL OR max_rows IS NULL OR lease IS NULL THEN
        RAISE EXCEPTION 'provider_claim_expiring: within, max_rows and lease cannot be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF max_rows < 1 OR lease <= interval '0' THEN
        RAISE EXCEPTION 'provider_claim_expiring: max_rows must be positive and lease longer than zero'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH claimable AS (
        SELECT c.id
          FROM @extschema@.provider_connections c
         WHERE c.status = 'active'
           AND c.credentials_expires_at IS NOT NULL
           AND c.credentials_expires_at <= now() + within
           AND @extschema@.provider_credential_type_refreshable(c.credential_type)
           AND (c.lease_until IS NULL OR c.lease_until <= now())
         ORDER BY c.credentials_expires_at
         LIMIT max_rows
           FOR UPDATE SKIP LOCKED)
    UPDATE @extschema@.provider_connections c
       SET lease_until = now() + lease
      FROM claimable
     WHERE c.id = claimable.id
    RETURNING c.id, c.user_id, c.provider_id, c.provider_slug::text, c.credential_type,
              c.credentials_expires_at;
END
$$;

/* Retention: the one way old events leave the append-only log (src/retention.c). */
CREATE FUNCTION @extschema@.provider_purge_events(before timestamptz, up_to_position bigint)
    RETURNS bigint
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_purge_events';

/* The newest feed position: a consumer's lag is this minus its stored position. */
CREATE FUNCTION @extschema@.provider_feed_head()
    RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT coalesce(max(global_position), 0) FROM @extschema@.provider_event_positions $$;
REVOKE ALL ON FUNCTION @extschema@.provider_feed_head() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_feed_head() IS
    'the newest feed position (0 when none): consumer lag is this minus the position it stored';

/* What applications read: everything but the sealed credentials. */
CREATE VIEW @extschema@.provider_connections_overview AS
SELECT c.id, c.user_id, c.provider_id, c.provider_slug, c.status, c.alias, c.credential_type,
       c.credentials_expires_at, c.connected_at, c.last_sync_at, c.created_at, c.updated_at,
       c.lease_until,
       c.status = 'active' AS is_connected,
       @extschema@.provider_status_needs_reauthentication(c.status) AS needs_reauthentication,
       coalesce(c.credentials_expires_at <= now(), false) AS is_credentials_expired,
       coalesce(c.credentials_expires_at > now()
                AND c.credentials_expires_at <= now() + interval '5 minutes', false)
           AS is_credentials_expiring_soon,
       c.status = 'active' AS can_sync,
       coalesce(@extschema@.provider_credential_type_refreshable(c.credential_type), false)
           AS supports_refresh
  FROM @extschema@.provider_connections c;

REVOKE ALL ON FUNCTION @extschema@.provider_begin_connect(uuid, uuid, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_mark_failed(uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_mark_expired(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_mark_revoked(uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_record_sync(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_expire_overdue(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_claim_expiring(interval, integer, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_purge_events(timestamptz, bigint) FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.provider_connections_overview FROM PUBLIC;

COMMENT ON COLUMN @extschema@.provider_connections.lease_until IS
    'until when a refresh worker holds the connection (provider_claim_expiring); NULL: nobody';
COMMENT ON COLUMN @extschema@.provider_audit_log.call_id IS
    'the call that wrote the event; the Attempted row and its outcome share it (NULL before 1.3)';
COMMENT ON FUNCTION @extschema@.provider_begin_connect(uuid, uuid, text, text, text) IS
    'create a pending connection, without credentials, when an OAuth redirect starts; returns a provider_result';
COMMENT ON FUNCTION @extschema@.provider_mark_failed(uuid, text) IS
    'pending to failed (the OAuth flow failed); returns a provider_result';
COMMENT ON FUNCTION @extschema@.provider_mark_expired(uuid) IS
    'active to expired, credentials kept; returns a provider_result';
COMMENT ON FUNCTION @extschema@.provider_mark_revoked(uuid, text) IS
    'active to revoked, credentials cleared; returns a provider_result';
COMMENT ON FUNCTION @extschema@.provider_record_sync(uuid) IS
    'set last_sync_at of an active connection (no events on success); returns a provider_result';
COMMENT ON FUNCTION @extschema@.provider_expire_overdue(interval) IS
    'expire active connections whose credentials expired more than grace ago, with their events; returns how many';
COMMENT ON FUNCTION @extschema@.provider_claim_expiring(interval, integer, interval) IS
    'lease up to max_rows active refreshable connections expiring within the window to the caller';
COMMENT ON FUNCTION @extschema@.provider_purge_events(timestamptz, bigint) IS
    'remove audit rows older than before and at or below up_to_position, with their positions; returns how many';
COMMENT ON FUNCTION @extschema@.provider_credential_type_refreshable(text) IS
    'whether credentials of this type can be refreshed (oauth2, link_token)';
COMMENT ON FUNCTION @extschema@.provider_status_needs_reauthentication(@extschema@.provider_connection_status) IS
    'whether a connection in this status waits for the user to connect again (expired, revoked, failed)';
COMMENT ON VIEW @extschema@.provider_connections_overview IS
    'every connection without its sealed credentials, with what applications ask of it';

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
COMMENT ON FUNCTION @extschema@.provider_connect(uuid, uuid, text, bytea, text, timestamptz, text, uuid) IS
    'create an active connection holding sealed credentials, or with connection_id make that pending, expired, revoked or failed connection active; returns a provider_result';
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
