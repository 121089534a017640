/*
 * bench/plpgsql_reference.sql
 *
 * The competitor: provider_connect, provider_disconnect and
 * provider_refresh_tokens written by hand in PL/pgSQL from the contract in
 * README.md, the way a competent user who did not have the extension would
 * write them. bench/run.sh measures the extension against it; to be a fair
 * competitor it does the same work and no more:
 *
 *   - the same validation, in the same order, with the same error codes and
 *     messages; business failures come back as a provider_result row;
 *   - an Attempted audit row first and exactly one Succeeded or Failed row
 *     after it, each sent with pg_notify in the caller's transaction
 *     (channel plref_events), with a JSON payload carrying event_id,
 *     audit_id and occurred_at (ISO 8601, microseconds, UTC) like the
 *     extension's;
 *   - the data change in a subtransaction (BEGIN ... EXCEPTION WHEN OTHERS)
 *     that turns an error into database_error, the outcome event written
 *     after it; cancels and timeouts (57xxx) and retryable errors (40xxx:
 *     serialization failure, deadlock) are re-raised instead, as 1.2 does;
 *   - credentials sealed with pgcrypto's pgp_sym_encrypt_bytea with the
 *     extension's options (AES-256, no compression, salted non-iterated
 *     S2K), under the key in the setting plref.encryption_key;
 *   - SECURITY DEFINER with a pinned search_path, as the extension's are;
 *   - UUIDv7 ids (time-ordered, so index inserts land at the right edge
 *     like the extension's), from the usual SQL one-liner for PostgreSQL 15;
 *   - a status state machine trigger (PL/pgSQL), ENABLE ALWAYS, and an
 *     append-only trigger on the audit log;
 *   - the keys and secondary indexes the extension's tables have from 1.4
 *     on (user_id in every key, for Citus, as its second column): on the
 *     connections, PRIMARY KEY (id, user_id), (user_id, provider_id),
 *     active-by-user, the expiring partial index and the pending partial
 *     index; on the audit log, PRIMARY KEY (id, user_id), UNIQUE (event_id,
 *     user_id), (user_id, id) and (connection_id, id), with "no user" stored
 *     as the nil UUID (the payload still says null), as the extension
 *     stores it.
 *     The extension's xid index and feed positions are its own (below).
 *
 * It does not have what the extension adds beyond the three handlers: the
 * commit-ordered event feed (provider_event_positions; from 1.2 also the
 * audit log's xid column and its index), the key id header on sealed
 * values and key rotation, and the COPY exemption in the status trigger (a
 * PL/pgSQL trigger cannot tell a COPY from an INSERT; it exempts
 * session_replication_role = replica only). It checks the credential type
 * in code, where 1.2 also has a CHECK constraint.
 *
 * Needs pgcrypto in schema public (CREATE EXTENSION provider_connections
 * CASCADE puts it there). Everything else lives in schema plref.
 */

CREATE SCHEMA plref;

CREATE TYPE plref.provider_connection_status AS ENUM (
    'pending', 'active', 'expired', 'revoked', 'failed', 'disconnected'
);

CREATE TYPE plref.provider_result AS (
    ok            boolean,
    connection_id uuid,
    error_code    text,
    error         text
);

/*
 * UUIDv7: 48 bits of Unix milliseconds, version and variant bits, the rest
 * random. A one-statement SQL function, so the planner inlines it.
 */
CREATE FUNCTION plref.uuid_v7() RETURNS uuid
    LANGUAGE sql VOLATILE PARALLEL SAFE
    AS $$
        SELECT pg_catalog.encode(
                   pg_catalog.set_bit(pg_catalog.set_bit(
                       pg_catalog.overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()),
                           pg_catalog.substring(pg_catalog.int8send(
                               pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) * 1000)::bigint),
                               3),
                           1, 6),
                       52, 1), 53, 1),
                   'hex')::uuid
    $$;

CREATE TABLE plref.provider_connections (
    id                     uuid NOT NULL,
    user_id                uuid NOT NULL,
    provider_id            uuid NOT NULL,
    provider_slug          varchar(50) NOT NULL,
    status                 plref.provider_connection_status NOT NULL,
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
ALTER TABLE plref.provider_connections
    ADD CONSTRAINT provider_connections_pkey PRIMARY KEY (id, user_id);
CREATE INDEX provider_connections_user_provider_idx
    ON plref.provider_connections (user_id, provider_id);
CREATE INDEX provider_connections_active_user_idx
    ON plref.provider_connections (user_id) WHERE status = 'active';
CREATE INDEX provider_connections_expiring_idx
    ON plref.provider_connections (credentials_expires_at)
    WHERE status = 'active' AND credentials_expires_at IS NOT NULL;
CREATE INDEX provider_connections_pending_idx
    ON plref.provider_connections (created_at, id)
    WHERE status = 'pending';

CREATE TABLE plref.provider_audit_log (
    id                bigserial NOT NULL,
    event_id          uuid NOT NULL DEFAULT plref.uuid_v7(),
    event_type        text NOT NULL,
    action            text NOT NULL,
    user_id           uuid NOT NULL,
    connection_id     uuid,
    provider_id       uuid,
    provider_slug     text,
    reason            text,
    needs_user_action boolean,
    occurred_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    context           jsonb NOT NULL
);
CREATE INDEX provider_audit_log_connection_idx
    ON plref.provider_audit_log (connection_id, id);
CREATE INDEX provider_audit_log_user_idx
    ON plref.provider_audit_log (user_id, id);
-- The extension's keys from 1.4 on: user_id second; "no user" is the nil UUID.
ALTER TABLE plref.provider_audit_log
    ADD CONSTRAINT provider_audit_log_pkey PRIMARY KEY (id, user_id),
    ADD CONSTRAINT provider_audit_log_event_id_key UNIQUE (event_id, user_id);

/*
 * The state machine on every write path (README, "Status state machine"):
 *   pending -> active | failed | disconnected
 *   active -> expired | revoked | disconnected
 *   expired | revoked | failed -> active | disconnected
 *   disconnected: terminal
 * plus the identity columns and the credentials invariants.
 */
CREATE FUNCTION plref.provider_connections_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.status IS NULL THEN
        RETURN NEW;                     -- the NOT NULL constraint reports it
    END IF;

    IF TG_OP = 'INSERT' THEN
        IF NEW.status NOT IN ('pending', 'active')
           AND current_setting('session_replication_role') <> 'replica' THEN
            RAISE EXCEPTION 'a new provider connection cannot start as "%"', NEW.status
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'New connections start as "pending" or "active".';
        END IF;
    ELSE
        IF NEW.id IS DISTINCT FROM OLD.id OR NEW.user_id IS DISTINCT FROM OLD.user_id
           OR NEW.provider_id IS DISTINCT FROM OLD.provider_id
           OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
            RAISE EXCEPTION 'column "%" of a provider connection cannot be changed',
                CASE WHEN NEW.id IS DISTINCT FROM OLD.id THEN 'id'
                     WHEN NEW.user_id IS DISTINCT FROM OLD.user_id THEN 'user_id'
                     WHEN NEW.provider_id IS DISTINCT FROM OLD.provider_id THEN 'provider_id'
                     ELSE 'created_at' END
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Disconnect the connection and create a new one instead.';
        END IF;
        IF NEW.status <> OLD.status AND NOT (
               (OLD.status = 'pending' AND NEW.status IN ('active', 'failed', 'disconnected'))
            OR (OLD.status = 'active' AND NEW.status IN ('expired', 'revoked', 'disconnected'))
            OR (OLD.status IN ('expired', 'revoked', 'failed') AND NEW.status IN ('active', 'disconnected'))) THEN
            RAISE EXCEPTION 'illegal provider connection status transition from "%" to "%"',
                OLD.status, NEW.status
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END IF;

    IF NEW.status = 'active' AND NEW.encrypted_credentials IS NULL THEN
        RAISE EXCEPTION 'an active provider connection must hold credentials'
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status = 'disconnected' AND NEW.encrypted_credentials IS NOT NULL THEN
        RAISE EXCEPTION 'a disconnected provider connection cannot hold credentials'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER provider_connections_guard
    BEFORE INSERT OR UPDATE ON plref.provider_connections
    FOR EACH ROW EXECUTE FUNCTION plref.provider_connections_guard();
ALTER TABLE plref.provider_connections ENABLE ALWAYS TRIGGER provider_connections_guard;

/* The audit trail is append-only for every role (no cost on INSERT). */
CREATE FUNCTION plref.provider_audit_log_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'provider_audit_log is append-only'
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER provider_audit_log_append_only
    BEFORE UPDATE OR DELETE ON plref.provider_audit_log
    FOR EACH ROW EXECUTE FUNCTION plref.provider_audit_log_append_only();
CREATE TRIGGER provider_audit_log_no_truncate
    BEFORE TRUNCATE ON plref.provider_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION plref.provider_audit_log_append_only();
ALTER TABLE plref.provider_audit_log ENABLE ALWAYS TRIGGER provider_audit_log_append_only;
ALTER TABLE plref.provider_audit_log ENABLE ALWAYS TRIGGER provider_audit_log_no_truncate;

/* s cut to at most maxbytes bytes without splitting a character. */
CREATE FUNCTION plref.clip(s text, maxbytes integer) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT
    AS $$
DECLARE
    n integer := least(pg_catalog.char_length(s), maxbytes);
BEGIN
    WHILE pg_catalog.octet_length(pg_catalog.left(s, n)) > maxbytes LOOP
        n := n - 1;
    END LOOP;
    RETURN pg_catalog.left(s, n);
END
$$;

/* Who made the call, once per call: the role outside SECURITY DEFINER. */
CREATE FUNCTION plref.call_context() RETURNS jsonb
    LANGUAGE sql VOLATILE
    AS $$
        SELECT pg_catalog.jsonb_build_object(
            'current_user', CASE WHEN pg_catalog.current_setting('role') = 'none'
                                 THEN session_user::text
                                 ELSE pg_catalog.current_setting('role') END,
            'session_user', session_user,
            'application_name', pg_catalog.current_setting('application_name'),
            'backend_pid', pg_catalog.pg_backend_pid(),
            'transaction_id', pg_catalog.pg_current_xact_id()::text::bigint)
    $$;

/*
 * One event: the audit row, then its NOTIFY, in the caller's transaction.
 * Called only from the handlers below, which pin search_path already (no
 * SET clause here: it would save and restore the setting on every event).
 * reason is non-NULL exactly for Failed events, needs_user_action exactly
 * for ProviderTokenRefreshFailed; free text is clipped (800 bytes for a
 * reason, 200 for a slug) so no payload can reach NOTIFY's 8000-byte limit.
 */
CREATE FUNCTION plref.emit_event(
    p_event_type        text,
    p_action            text,
    p_user_id           uuid,
    p_connection_id     uuid,
    p_provider_id       uuid,
    p_provider_slug     text,
    p_reason            text,
    p_needs_user_action boolean,
    p_context           jsonb)
    RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_slug     text := CASE WHEN octet_length(p_provider_slug) > 200
                            THEN plref.clip(p_provider_slug, 200) ELSE p_provider_slug END;
    v_reason   text := CASE WHEN octet_length(p_reason) > 800
                            THEN plref.clip(p_reason, 800) ELSE p_reason END;
    v_id       bigint;
    v_event_id uuid;
    v_at       timestamptz;
    v_payload  json;
BEGIN
    INSERT INTO plref.provider_audit_log
           (event_type, action, user_id, connection_id, provider_id, provider_slug,
            reason, needs_user_action, context)
    VALUES (p_event_type, p_action, coalesce(p_user_id, '00000000-0000-0000-0000-000000000000'),
            p_connection_id, p_provider_id, v_slug,
            v_reason, p_needs_user_action, p_context)
    RETURNING id, event_id, occurred_at INTO v_id, v_event_id, v_at;

    IF v_reason IS NULL THEN
        v_payload := json_build_object(
            'event_type', p_event_type, 'event_id', v_event_id, 'audit_id', v_id,
            'occurred_at', to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
            'user_id', p_user_id, 'connection_id', p_connection_id,
            'provider_id', p_provider_id, 'provider_slug', v_slug);
    ELSIF p_needs_user_action IS NULL THEN
        v_payload := json_build_object(
            'event_type', p_event_type, 'event_id', v_event_id, 'audit_id', v_id,
            'occurred_at', to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
            'user_id', p_user_id, 'connection_id', p_connection_id,
            'provider_id', p_provider_id, 'provider_slug', v_slug, 'reason', v_reason);
    ELSE
        v_payload := json_build_object(
            'event_type', p_event_type, 'event_id', v_event_id, 'audit_id', v_id,
            'occurred_at', to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
            'user_id', p_user_id, 'connection_id', p_connection_id,
            'provider_id', p_provider_id, 'provider_slug', v_slug, 'reason', v_reason,
            'needs_user_action', p_needs_user_action);
    END IF;
    PERFORM pg_notify('plref_events', v_payload::text);
    RETURN v_id;
END
$$;

/* The sealing options the extension uses (src/crypto.c, PC_PGP_OPTIONS). */
CREATE FUNCTION plref.seal(plain bytea, key text) RETURNS bytea
    LANGUAGE sql VOLATILE
    AS $$
        SELECT public.pgp_sym_encrypt_bytea(plain, key,
            'cipher-algo=aes256, compress-algo=0, s2k-mode=1, s2k-digest-algo=sha1')
    $$;

CREATE FUNCTION plref.provider_connect(
    user_id         uuid,
    provider_id     uuid,
    provider_slug   text,
    credentials     bytea,
    credential_type text DEFAULT 'oauth2',
    expires_at      timestamptz DEFAULT NULL,
    alias           text DEFAULT NULL)
    RETURNS plref.provider_result
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_context jsonb := plref.call_context();
    v_key     text;
    v_id      uuid;
    v_now     timestamptz;
    v_code    text;
    v_error   text;
BEGIN
    PERFORM plref.emit_event('ProviderConnectionAttempted', 'provider_connection_attempted',
                             $1, NULL, $2, $3, NULL, NULL, v_context);

    IF $1 IS NULL THEN
        v_code := 'invalid_argument'; v_error := 'user_id cannot be null';
    ELSIF $2 IS NULL THEN
        v_code := 'invalid_argument'; v_error := 'provider_id cannot be null';
    ELSIF $4 IS NULL OR octet_length($4) = 0 THEN
        v_code := 'invalid_credentials'; v_error := 'Invalid or missing credentials';
    ELSIF octet_length($4) > 1048576 THEN
        v_code := 'credentials_too_large';
        v_error := 'Credentials exceed the maximum size of 1048576 bytes';
    ELSIF $3 IS NULL OR $3 = '' OR char_length($3) > 50 THEN
        v_code := 'invalid_provider_slug'; v_error := 'Invalid provider slug';
    ELSIF $5 IS NULL OR $5 NOT IN ('oauth2', 'api_key', 'link_token', 'certificate', 'file_import', 'custom') THEN
        v_code := 'invalid_credential_type';
        v_error := 'Invalid credential type (expected oauth2, api_key, link_token, certificate, file_import or custom)';
    ELSIF char_length($7) > 100 THEN
        v_code := 'invalid_alias'; v_error := 'Alias exceeds maximum length';
    ELSIF $6 = '-infinity' THEN
        v_code := 'invalid_argument'; v_error := 'expires_at cannot be -infinity';
    ELSE
        v_key := current_setting('plref.encryption_key', true);
        IF v_key IS NULL OR v_key = '' THEN
            v_code := 'encryption_unavailable';
            v_error := 'No encryption key configured (set plref.encryption_key)';
        ELSE
            BEGIN
                v_now := clock_timestamp();
                INSERT INTO plref.provider_connections
                       (id, user_id, provider_id, provider_slug, status, alias, credential_type,
                        encrypted_credentials, credentials_expires_at, connected_at,
                        created_at, updated_at)
                VALUES (plref.uuid_v7(), $1, $2, $3, 'active', $7, $5,
                        plref.seal($4, v_key), $6, v_now, v_now, v_now)
                RETURNING id INTO v_id;
            EXCEPTION
            WHEN transaction_rollback OR operator_intervention THEN
                RAISE;              -- retryable (40xxx) or a cancel (57xxx): not ours to record
            WHEN OTHERS THEN
                v_id := NULL;
                v_code := 'database_error';
                v_error := 'Database error occurred: ' || SQLERRM;
            END;
        END IF;
    END IF;

    IF v_code IS NULL THEN
        PERFORM plref.emit_event('ProviderConnectionSucceeded', 'provider_connected',
                                 $1, v_id, $2, $3, NULL, NULL, v_context);
    ELSE
        PERFORM plref.emit_event('ProviderConnectionFailed', 'provider_connection_failed',
                                 $1, NULL, $2, $3, v_error, NULL, v_context);
    END IF;
    RETURN (v_code IS NULL, v_id, v_code, v_error)::plref.provider_result;
END
$$;

CREATE FUNCTION plref.provider_disconnect(
    user_id       uuid,
    connection_id uuid)
    RETURNS plref.provider_result
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_context  jsonb := plref.call_context();
    v_found    boolean := false;
    v_owner    uuid;
    v_provider uuid;
    v_slug     text;
    v_code     text;
    v_error    text;
BEGIN
    IF $2 IS NOT NULL THEN
        SELECT c.user_id, c.provider_id, c.provider_slug
          INTO v_owner, v_provider, v_slug
          FROM plref.provider_connections c
         WHERE c.id = $2;
        v_found := FOUND;
    END IF;

    PERFORM plref.emit_event('ProviderDisconnectionAttempted', 'provider_disconnection_attempted',
                             $1, $2, v_provider, v_slug, NULL, NULL, v_context);

    IF $1 IS NULL THEN
        v_code := 'invalid_argument'; v_error := 'user_id cannot be null';
    ELSIF $2 IS NULL THEN
        v_code := 'invalid_argument'; v_error := 'connection_id cannot be null';
    ELSIF NOT v_found THEN
        v_code := 'connection_not_found'; v_error := 'Connection not found';
    ELSIF v_owner <> $1 THEN
        v_code := 'not_owned_by_user'; v_error := 'Connection not owned by user';
    ELSE
        BEGIN
            UPDATE plref.provider_connections c
               SET status = 'disconnected', encrypted_credentials = NULL,
                   credential_type = NULL, credentials_expires_at = NULL,
                   updated_at = clock_timestamp()
             WHERE c.id = $2;
            IF NOT FOUND THEN           -- deleted while we waited for the lock
                v_code := 'connection_not_found'; v_error := 'Connection not found';
            END IF;
        EXCEPTION
            WHEN transaction_rollback OR operator_intervention THEN
                RAISE;              -- retryable (40xxx) or a cancel (57xxx): not ours to record
            WHEN OTHERS THEN
                v_code := 'database_error';
                v_error := 'Database error occurred: ' || SQLERRM;
        END;
    END IF;

    IF v_code IS NULL THEN
        PERFORM plref.emit_event('ProviderDisconnectionSucceeded', 'provider_disconnected',
                                 $1, $2, v_provider, v_slug, NULL, NULL, v_context);
    ELSE
        PERFORM plref.emit_event('ProviderDisconnectionFailed', 'provider_disconnection_failed',
                                 $1, $2, v_provider, v_slug, v_error, NULL, v_context);
    END IF;
    RETURN (v_code IS NULL, $2, v_code, v_error)::plref.provider_result;
END
$$;

CREATE FUNCTION plref.provider_refresh_tokens(
    connection_id   uuid,
    credentials     bytea,
    expires_at      timestamptz DEFAULT NULL,
    credential_type text DEFAULT NULL)
    RETURNS plref.provider_result
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_context  jsonb := plref.call_context();
    v_found    boolean := false;
    v_owner    uuid;
    v_provider uuid;
    v_slug     text;
    v_status   plref.provider_connection_status;
    v_key      text;
    v_code     text;
    v_error    text;
BEGIN
    IF $1 IS NOT NULL THEN
        SELECT c.user_id, c.provider_id, c.provider_slug, c.status
          INTO v_owner, v_provider, v_slug, v_status
          FROM plref.provider_connections c
         WHERE c.id = $1;
        v_found := FOUND;
    END IF;

    PERFORM plref.emit_event('ProviderTokenRefreshAttempted', 'provider_token_refresh_attempted',
                             v_owner, $1, v_provider, v_slug, NULL, NULL, v_context);

    IF $1 IS NULL THEN
        v_code := 'invalid_argument'; v_error := 'connection_id cannot be null';
    ELSIF NOT v_found THEN
        v_code := 'connection_not_found'; v_error := 'Connection not found';
    ELSIF $2 IS NULL OR octet_length($2) = 0 THEN
        v_code := 'invalid_credentials'; v_error := 'Invalid or missing credentials';
    ELSIF octet_length($2) > 1048576 THEN
        v_code := 'credentials_too_large';
        v_error := 'Credentials exceed the maximum size of 1048576 bytes';
    ELSIF $4 IS NOT NULL AND $4 NOT IN ('oauth2', 'api_key', 'link_token', 'certificate', 'file_import', 'custom') THEN
        v_code := 'invalid_credential_type';
        v_error := 'Invalid credential type (expected oauth2, api_key, link_token, certificate, file_import or custom)';
    ELSIF $3 = '-infinity' THEN
        v_code := 'invalid_argument'; v_error := 'expires_at cannot be -infinity';
    ELSIF v_status <> 'active' THEN
        v_code := 'not_active'; v_error := 'Connection is not active';
    ELSE
        v_key := current_setting('plref.encryption_key', true);
        IF v_key IS NULL OR v_key = '' THEN
            v_code := 'encryption_unavailable';
            v_error := 'No encryption key configured (set plref.encryption_key)';
        ELSE
            BEGIN
                -- Re-checked on the newest row version after a lock wait: a
                -- refresh that loses to a concurrent disconnect updates nothing.
                UPDATE plref.provider_connections c
                   SET encrypted_credentials = plref.seal($2, v_key),
                       credentials_expires_at = $3,
                       credential_type = coalesce($4, c.credential_type),
                       updated_at = clock_timestamp()
                 WHERE c.id = $1 AND c.status = 'active';
                IF NOT FOUND THEN
                    PERFORM 1 FROM plref.provider_connections c WHERE c.id = $1;
                    IF FOUND THEN
                        v_code := 'not_active'; v_error := 'Connection is not active';
                    ELSE
                        v_code := 'connection_not_found'; v_error := 'Connection not found';
                    END IF;
                END IF;
            EXCEPTION
            WHEN transaction_rollback OR operator_intervention THEN
                RAISE;              -- retryable (40xxx) or a cancel (57xxx): not ours to record
            WHEN OTHERS THEN
                v_code := 'database_error';
                v_error := 'Database error occurred: ' || SQLERRM;
            END;
        END IF;
    END IF;

    IF v_code IS NULL THEN
        PERFORM plref.emit_event('ProviderTokenRefreshSucceeded', 'provider_token_refreshed',
                                 v_owner, $1, v_provider, v_slug, NULL, NULL, v_context);
    ELSE
        PERFORM plref.emit_event('ProviderTokenRefreshFailed', 'provider_token_refresh_failed',
                                 v_owner, $1, v_provider, v_slug, v_error,
                                 v_code = 'not_active', v_context);
    END IF;
    RETURN (v_code IS NULL, $1, v_code, v_error)::plref.provider_result;
END
$$;

/* Least privilege, as the extension: nothing for PUBLIC. */
REVOKE ALL ON FUNCTION plref.provider_connect(uuid, uuid, text, bytea, text, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION plref.provider_disconnect(uuid, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION plref.provider_refresh_tokens(uuid, bytea, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION plref.emit_event(text, text, uuid, uuid, uuid, text, text, boolean, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION plref.seal(bytea, text) FROM PUBLIC;
REVOKE ALL ON TABLE plref.provider_connections, plref.provider_audit_log FROM PUBLIC;
