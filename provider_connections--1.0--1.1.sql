/*
 * provider_connections--1.0--1.1.sql
 *
 * 1.1: the event feed that no consumer can miss (provider_events_since and
 * the commit-ordered positions behind it, see src/feed.c) and key rotation
 * (provider_rotate_credentials).
 *
 * Copyright (c) 2026, provider_connections developers.
 */
\echo Use "ALTER EXTENSION provider_connections UPDATE TO '1.1'" to load this file. \quit

CREATE SEQUENCE @extschema@.provider_event_position_seq AS bigint;

CREATE TABLE @extschema@.provider_event_positions (
    global_position bigint PRIMARY KEY,
    audit_id        bigint NOT NULL UNIQUE
);
COMMENT ON TABLE @extschema@.provider_event_positions IS
    'commit-ordered position of each audit row, assigned at commit; read it through provider_events_since()';

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

/*
 * Events written before this update get positions in id order. Writers that
 * are still running are waited for, and new ones wait until this commits,
 * so every event is numbered exactly once.
 */
LOCK TABLE @extschema@.provider_audit_log IN SHARE MODE;
INSERT INTO @extschema@.provider_event_positions (global_position, audit_id)
SELECT pg_catalog.nextval('@extschema@.provider_event_position_seq'), id
  FROM (SELECT id FROM @extschema@.provider_audit_log ORDER BY id) AS existing;

/*
 * The feed: audit rows after a position, in position order. A consumer keeps
 * the last global_position it processed (0 at first) and passes it back.
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
    LANGUAGE sql STABLE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT p.global_position, a.id, a.event_id, a.event_type, a.action, a.user_id,
               a.connection_id, a.provider_id, a.provider_slug, a.reason,
               a.needs_user_action, a.occurred_at, a.context
          FROM @extschema@.provider_event_positions p
          JOIN @extschema@.provider_audit_log a ON a.id OPERATOR(pg_catalog.=) p.audit_id
         WHERE p.global_position OPERATOR(pg_catalog.>) after_position
         ORDER BY p.global_position
         LIMIT max_events
    $$;

/* Superuser-only (checked in C too): not SECURITY DEFINER. */
CREATE FUNCTION @extschema@.provider_rotate_credentials(
    batch_size integer DEFAULT 1000,
    OUT rotated bigint,
    OUT remaining bigint)
    RETURNS record
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_rotate_credentials';

REVOKE ALL ON FUNCTION @extschema@.provider_events_since(bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_rotate_credentials(integer) FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.provider_event_positions FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.provider_event_position_seq FROM PUBLIC;
