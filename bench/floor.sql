/*
 * bench/floor.sql
 *
 * The raw-SQL floor's tables: what the least an application can do costs
 * when it writes the same rows as one successful provider_connect. Schema
 * floor holds copies of the connections table and the audit log with the
 * same columns, keys and secondary indexes as the PL/pgSQL reference (the
 * extension's from 1.4 on, user_id second in the keys), but no triggers and no functions: the
 * benchmark writes them with a single prepared statement
 * (floor_connect.sql, floor_connect_nonotify.sql), using only built-in
 * functions and a ciphertext computed once before the run.
 */

CREATE SCHEMA floor;

CREATE TYPE floor.provider_connection_status AS ENUM (
    'pending', 'active', 'expired', 'revoked', 'failed', 'disconnected'
);

CREATE TABLE floor.provider_connections (
    id                     uuid NOT NULL,
    user_id                uuid NOT NULL,
    provider_id            uuid NOT NULL,
    provider_slug          varchar(50) NOT NULL,
    status                 floor.provider_connection_status NOT NULL,
    alias                  varchar(100),
    credential_type        text,
    encrypted_credentials  bytea,
    credentials_expires_at timestamptz,
    connected_at           timestamptz,
    last_sync_at           timestamptz,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL
);
-- The extension's keys from 1.4 on (user_id in them, second, for Citus).
ALTER TABLE floor.provider_connections
    ADD CONSTRAINT provider_connections_pkey PRIMARY KEY (id, user_id);
CREATE INDEX provider_connections_user_provider_idx
    ON floor.provider_connections (user_id, provider_id);
CREATE INDEX provider_connections_active_user_idx
    ON floor.provider_connections (user_id) WHERE status = 'active';
CREATE INDEX provider_connections_expiring_idx
    ON floor.provider_connections (credentials_expires_at)
    WHERE status = 'active' AND credentials_expires_at IS NOT NULL;
CREATE INDEX provider_connections_pending_idx
    ON floor.provider_connections (created_at, id)
    WHERE status = 'pending';

CREATE TABLE floor.provider_audit_log (
    id                bigserial NOT NULL,
    event_id          uuid NOT NULL,
    event_type        text NOT NULL,
    action            text NOT NULL,
    user_id           uuid NOT NULL,
    connection_id     uuid,
    provider_id       uuid,
    provider_slug     text,
    reason            text,
    needs_user_action boolean,
    occurred_at       timestamptz NOT NULL,
    context           jsonb NOT NULL
);
CREATE INDEX provider_audit_log_connection_idx
    ON floor.provider_audit_log (connection_id, id);
CREATE INDEX provider_audit_log_user_idx
    ON floor.provider_audit_log (user_id, id);
-- The extension's keys from 1.4 on: user_id second; "no user" is the nil UUID.
ALTER TABLE floor.provider_audit_log
    ADD CONSTRAINT provider_audit_log_pkey PRIMARY KEY (id, user_id),
    ADD CONSTRAINT provider_audit_log_event_id_key UNIQUE (event_id, user_id);
