/*
 * provider_connections--1.0.sql
 *
 * Install script: the status type, the connections table and its state
 * machine trigger, the append-only audit log, and the C entry points.
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

CREATE TABLE @extschema@.provider_connections (
    id                     uuid PRIMARY KEY,
    user_id                uuid NOT NULL,
    provider_id            uuid NOT NULL,
    provider_slug          varchar(50) NOT NULL,
    status                 @extschema@.provider_connection_status NOT NULL,
    alias                  varchar(100),
    credential_type        text,
    encrypted_credentials  bytea,
    credentials_expires_at timestamptz,
    connected_at           timestamptz,
    last_sync_at           timestamptz,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL
);
COMMENT ON TABLE @extschema@.provider_connections IS
    'one row per user and provider connection; status changes are checked by the provider_connections_guard trigger';
COMMENT ON COLUMN @extschema@.provider_connections.encrypted_credentials IS
    'credentials sealed with pgcrypto under provider_connections.encryption_key; read them with provider_credentials()';

CREATE INDEX provider_connections_user_idx
    ON @extschema@.provider_connections (user_id);
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
    context           jsonb NOT NULL
);
ALTER SEQUENCE @extschema@.provider_audit_log_id_seq
    OWNED BY @extschema@.provider_audit_log.id;
COMMENT ON TABLE @extschema@.provider_audit_log IS
    'append-only trail of every provider_connect, provider_disconnect and provider_refresh_tokens call';

CREATE INDEX provider_audit_log_connection_idx
    ON @extschema@.provider_audit_log (connection_id, id);
CREATE INDEX provider_audit_log_user_idx
    ON @extschema@.provider_audit_log (user_id, id);

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
    alias           text DEFAULT NULL)
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
REVOKE ALL ON FUNCTION @extschema@.provider_connect(uuid, uuid, text, bytea, text, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_disconnect(uuid, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_refresh_tokens(uuid, bytea, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_credentials(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_connections_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_audit_log_append_only() FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.provider_connections FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.provider_audit_log FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.provider_audit_log_id_seq FROM PUBLIC;
