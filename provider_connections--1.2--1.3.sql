/*
 * provider_connections--1.2--1.3.sql
 *
 * 1.2 to 1.3: the rest of the connection lifecycle (provider_begin_connect,
 * provider_connect with a connection id, provider_mark_failed/_expired/
 * _revoked, provider_record_sync, provider_expire_overdue), the read side
 * (provider_connections_overview, provider_claim_expiring and its lease
 * column), retention (provider_purge_events) and call_id on audit rows.
 * Existing audit rows keep call_id NULL.
 *
 * provider_connect gains a last argument, connection_id DEFAULT NULL. A
 * function's arguments cannot change in place, and keeping the 7-argument
 * function beside the new one would make every call that omits the new
 * argument ambiguous; so the old function is replaced, and the grants
 * users gave on it are given again on the new one. They are given by this
 * script, which would record them as the extension's initial privileges
 * (pg_init_privs) and so leave them out of pg_dump; the initial privileges
 * are set back to those of a fresh install, so pg_dump keeps dumping them
 * as the users' own.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
\echo Use "ALTER EXTENSION provider_connections UPDATE TO '1.3'" to load this file. \quit

ALTER TABLE @extschema@.provider_connections ADD COLUMN lease_until timestamptz;
ALTER TABLE @extschema@.provider_audit_log ADD COLUMN call_id uuid;

CREATE TEMPORARY TABLE pc_connect_grants AS
SELECT a.grantee, a.privilege_type, a.is_grantable
  FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
 WHERE p.oid = '@extschema@.provider_connect(uuid, uuid, text, bytea, text, timestamptz, text)'::pg_catalog.regprocedure
   AND a.grantee <> p.proowner;

ALTER EXTENSION provider_connections
    DROP FUNCTION @extschema@.provider_connect(uuid, uuid, text, bytea, text, timestamptz, text);
DROP FUNCTION @extschema@.provider_connect(uuid, uuid, text, bytea, text, timestamptz, text);

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
REVOKE ALL ON FUNCTION @extschema@.provider_connect(uuid, uuid, text, bytea, text, timestamptz, text, uuid) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_connect(uuid, uuid, text, bytea, text, timestamptz, text, uuid) IS
    'create an active connection holding sealed credentials, or with connection_id make that pending, expired, revoked or failed connection active; returns a provider_result';

DO $$
DECLARE
    g record;
    fresh pg_catalog.aclitem[];
BEGIN
    SELECT initprivs INTO fresh FROM pg_catalog.pg_init_privs
     WHERE objoid = '@extschema@.provider_connect(uuid, uuid, text, bytea, text, timestamptz, text, uuid)'::pg_catalog.regprocedure
       AND classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass;
    FOR g IN SELECT * FROM pc_connect_grants LOOP
        EXECUTE pg_catalog.format('GRANT %s ON FUNCTION @extschema@.provider_connect(uuid, uuid, text, bytea, text, timestamptz, text, uuid) TO %s%s',
                                  g.privilege_type,
                                  CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(g.grantee::regrole::text) END,
                                  CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    UPDATE pg_catalog.pg_init_privs SET initprivs = fresh
     WHERE objoid = '@extschema@.provider_connect(uuid, uuid, text, bytea, text, timestamptz, text, uuid)'::pg_catalog.regprocedure
       AND classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass;
END
$$;
DROP TABLE pc_connect_grants;

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
