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

/*
 * The feed's edges: a purge horizon, a head that never goes backwards, and
 * consumers told when they are behind a purge.
 *
 * provider_feed_horizon holds the highest feed position provider_purge_events
 * ever removed (no row until the first purge). A consumer whose position is
 * below it missed purged events: provider_events_since raises 72000 for it
 * unless it passes skip_purged => true. It is also the floor of
 * provider_feed_head(), which thus never goes backwards, even when a purge
 * removed every event. Unlike provider_feed_state it is dumped: positions
 * are, and the horizon is a fact about them.
 */
CREATE TABLE @extschema@.provider_feed_horizon (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    purged_up_to bigint NOT NULL CHECK (purged_up_to > 0)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.provider_feed_horizon', '');
REVOKE ALL ON TABLE @extschema@.provider_feed_horizon FROM PUBLIC;
COMMENT ON TABLE @extschema@.provider_feed_horizon IS
    'the highest feed position provider_purge_events removed (no row before the first purge)';
COMMENT ON COLUMN @extschema@.provider_feed_horizon.purged_up_to IS
    'consumers at a lower position missed purged events; provider_feed_head() never returns less';

CREATE FUNCTION @extschema@.provider_feed_resume(after_position bigint, skip_purged boolean, purged_up_to bigint)
    RETURNS bigint
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'provider_feed_resume';
REVOKE ALL ON FUNCTION @extschema@.provider_feed_resume(bigint, boolean, bigint) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_feed_resume(bigint, boolean, bigint) IS
    'internal: where provider_events_since reads on from; raises 72000 for a position behind the purge horizon';

/*
 * provider_events_since gains a last argument, skip_purged DEFAULT false.
 * As for provider_connect in 1.3 (see provider_connections--1.2--1.3.sql):
 * the 2-argument function is replaced, since keeping it would make every
 * call that omits the new argument ambiguous, and the grants users gave on
 * it are given again on the new one, as theirs.
 */
CREATE TEMPORARY TABLE pc_feed_grants AS
SELECT a.grantee, a.privilege_type, a.is_grantable
  FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
 WHERE p.oid = '@extschema@.provider_events_since(bigint, integer)'::pg_catalog.regprocedure
   AND a.grantee <> p.proowner;

ALTER EXTENSION provider_connections DROP FUNCTION @extschema@.provider_events_since(bigint, integer);
DROP FUNCTION @extschema@.provider_events_since(bigint, integer);

/*
 * The feed: audit rows after a position, in position order. A consumer keeps
 * the last global_position it processed (0 at first) and passes it back.
 * It first makes sure what committed before the call is numbered; then, in
 * the snapshot of its read, checks the position against the purge horizon
 * (a purge committing between the two statements is seen by the read).
 */
CREATE FUNCTION @extschema@.provider_events_since(
    after_position bigint,
    max_events     integer DEFAULT 1000,
    skip_purged    boolean DEFAULT false)
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
        -- Where to read on from (checked against the horizon) first, outside
        -- the page's LIMIT, so that even max_events = 0 checks; then a page
        -- of positions by their index, then each one's audit row by its key
        -- (OFFSET 0 keeps that a lookup per row): planned without knowing
        -- max_events, a join would scan the whole log for a page.
        SELECT p.global_position, a.id, a.event_id, a.event_type, a.action, a.user_id,
               a.connection_id, a.provider_id, a.provider_slug, a.reason,
               a.needs_user_action, a.occurred_at, a.context
          FROM (SELECT @extschema@.provider_feed_resume(
                           after_position, skip_purged,
                           (SELECT h.purged_up_to FROM @extschema@.provider_feed_horizon h)) AS after
                OFFSET 0) r
         CROSS JOIN LATERAL (SELECT pp.global_position, pp.audit_id
                               FROM @extschema@.provider_event_positions pp
                              WHERE pp.global_position OPERATOR(pg_catalog.>) r.after
                              ORDER BY pp.global_position
                              LIMIT max_events) p
         CROSS JOIN LATERAL (SELECT * FROM @extschema@.provider_audit_log aa
                              WHERE aa.id OPERATOR(pg_catalog.=) p.audit_id
                             OFFSET 0) a
         ORDER BY p.global_position
    $$;
REVOKE ALL ON FUNCTION @extschema@.provider_events_since(bigint, integer, boolean) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_events_since(bigint, integer, boolean) IS
    'committed events after a feed position, in position order, at most max_events; 72000 behind the purge horizon unless skip_purged';

DO $$
DECLARE
    g record;
    fresh pg_catalog.aclitem[];
BEGIN
    SELECT initprivs INTO fresh FROM pg_catalog.pg_init_privs
     WHERE objoid = '@extschema@.provider_events_since(bigint, integer, boolean)'::pg_catalog.regprocedure
       AND classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass;
    FOR g IN SELECT * FROM pc_feed_grants LOOP
        EXECUTE pg_catalog.format('GRANT %s ON FUNCTION @extschema@.provider_events_since(bigint, integer, boolean) TO %s%s',
                                  g.privilege_type,
                                  CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(g.grantee::regrole::text) END,
                                  CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    UPDATE pg_catalog.pg_init_privs SET initprivs = fresh
     WHERE objoid = '@extschema@.provider_events_since(bigint, integer, boolean)'::pg_catalog.regprocedure
       AND classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass;
END
$$;
DROP TABLE pc_feed_grants;

/*
 * The head: numbers what committed before the call first, as the feed does
 * (so a consumer's lag never hides waiting events), and never goes below
 * the purge horizon (so a purge of every event does not set it back).
 * CREATE OR REPLACE keeps its grants.
 */
CREATE OR REPLACE FUNCTION @extschema@.provider_feed_head()
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT @extschema@.provider_feed_assign();
        SELECT pg_catalog.max(h) FROM (
            SELECT pg_catalog.max(global_position) FROM @extschema@.provider_event_positions
            UNION ALL
            SELECT purged_up_to FROM @extschema@.provider_feed_horizon
            UNION ALL
            SELECT 0) s(h)
    $$;
COMMENT ON FUNCTION @extschema@.provider_feed_head() IS
    'the newest feed position, after numbering what committed before the call; never decreases (0 before any event): consumer lag is this minus the position it stored';
COMMENT ON FUNCTION @extschema@.provider_purge_events(timestamptz, bigint) IS
    'remove audit rows older than before and at or below up_to_position, with their positions, raising the purge horizon; returns how many';

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

/*
 * Health: provider_stats(), one row for monitoring (counts of connections,
 * the log and the feed, this database's worker, the notification queue),
 * and provider_worker_status(), its internal reading of the worker's
 * shared slot (src/worker_api.c).
 */
CREATE FUNCTION @extschema@.provider_worker_status(
    OUT running boolean,
    OUT last_round_at timestamptz,
    OUT last_error text,
    OUT last_error_at timestamptz)
    RETURNS record
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'provider_worker_status';
REVOKE ALL ON FUNCTION @extschema@.provider_worker_status() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_worker_status() IS
    'internal: this database''s worker as its shared slot shows it (running, last committed round, last round error and when)';

/*
 * Counts are exact for connections (one scan of provider_connections, the
 * table of live state) and for unnumbered events (an index scan of the
 * rows the next round would number, as its candidates are found); the log
 * itself is counted from the planner's statistics (reltuples per page
 * times its pages now), since an exact count of a log of millions of rows
 * takes seconds: exact only while it has never been analyzed. Times are
 * clock_timestamp() at the start of the call, not the transaction's start.
 * Nothing is numbered: the feed head is the highest position assigned so
 * far (or the purge horizon).
 */
CREATE FUNCTION @extschema@.provider_stats(
    expiring_within interval DEFAULT '5 minutes',
    abandoned_after interval DEFAULT '1 hour',
    OUT pending bigint,
    OUT active bigint,
    OUT expired bigint,
    OUT revoked bigint,
    OUT failed bigint,
    OUT disconnected bigint,
    OUT expiring_soon bigint,
    OUT overdue bigint,
    OUT leased bigint,
    OUT pending_abandoned bigint,
    OUT audit_rows_estimate bigint,
    OUT feed_head bigint,
    OUT unnumbered_events bigint,
    OUT oldest_unnumbered_age interval,
    OUT worker_running boolean,
    OUT worker_last_round_at timestamptz,
    OUT worker_last_error text,
    OUT worker_last_error_at timestamptz,
    OUT notification_queue_usage double precision)
    RETURNS record
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    t timestamptz := pg_catalog.clock_timestamp();
    soon_until timestamptz;
    abandoned_before timestamptz;
    st record;
    pages double precision;
    own_xid xid8 := pg_catalog.pg_current_xact_id_if_assigned();
BEGIN
    IF expiring_within IS NULL OR abandoned_after IS NULL THEN
        RAISE EXCEPTION 'provider_stats: expiring_within and abandoned_after cannot be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF expiring_within OPERATOR(pg_catalog.<) interval '0'
       OR abandoned_after OPERATOR(pg_catalog.<) interval '0' THEN
        RAISE EXCEPTION 'provider_stats: expiring_within and abandoned_after cannot be negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    soon_until := t OPERATOR(pg_catalog.+) expiring_within;
    abandoned_before := t OPERATOR(pg_catalog.-) abandoned_after;

    SELECT pg_catalog.count(*) FILTER (WHERE c.status OPERATOR(pg_catalog.=) 'pending'),
           pg_catalog.count(*) FILTER (WHERE c.status OPERATOR(pg_catalog.=) 'active'),
           pg_catalog.count(*) FILTER (WHERE c.status OPERATOR(pg_catalog.=) 'expired'),
           pg_catalog.count(*) FILTER (WHERE c.status OPERATOR(pg_catalog.=) 'revoked'),
           pg_catalog.count(*) FILTER (WHERE c.status OPERATOR(pg_catalog.=) 'failed'),
           pg_catalog.count(*) FILTER (WHERE c.status OPERATOR(pg_catalog.=) 'disconnected'),
           pg_catalog.count(*) FILTER (WHERE c.status OPERATOR(pg_catalog.=) 'active'
                                         AND c.credentials_expires_at OPERATOR(pg_catalog.>) t
                                         AND c.credentials_expires_at OPERATOR(pg_catalog.<=) soon_until),
           pg_catalog.count(*) FILTER (WHERE c.status OPERATOR(pg_catalog.=) 'active'
                                         AND c.credentials_expires_at OPERATOR(pg_catalog.<=) t),
           pg_catalog.count(*) FILTER (WHERE c.lease_until OPERATOR(pg_catalog.>) t),
           pg_catalog.count(*) FILTER (WHERE c.status OPERATOR(pg_catalog.=) 'pending'
                                         AND c.created_at OPERATOR(pg_catalog.<) abandoned_before)
      INTO pending, active, expired, revoked, failed, disconnected,
           expiring_soon, overdue, leased, pending_abandoned
      FROM @extschema@.provider_connections c;

    -- The planner's estimate: tuples per page at the last VACUUM or
    -- ANALYZE times the pages now. Never analyzed (reltuples -1) or
    -- analyzed empty: no density to scale, so count.
    pages := pg_catalog.pg_relation_size('@extschema@.provider_audit_log'::pg_catalog.regclass)
             OPERATOR(pg_catalog./) pg_catalog.current_setting('block_size')::double precision;
    SELECT CASE WHEN r.reltuples OPERATOR(pg_catalog.>=) 0 AND r.relpages OPERATOR(pg_catalog.>) 0
                THEN pg_catalog.round(r.reltuples::double precision OPERATOR(pg_catalog./) r.relpages
                                      OPERATOR(pg_catalog.*) pages)::bigint
           END
      INTO audit_rows_estimate
      FROM pg_catalog.pg_class r
     WHERE r.oid OPERATOR(pg_catalog.=) '@extschema@.provider_audit_log'::pg_catalog.regclass;
    IF audit_rows_estimate IS NULL THEN
        SELECT pg_catalog.count(*) INTO audit_rows_estimate FROM @extschema@.provider_audit_log;
    END IF;

    SELECT pg_catalog.max(h) INTO feed_head FROM (
        SELECT pg_catalog.max(p.global_position) FROM @extschema@.provider_event_positions p
        UNION ALL
        SELECT hz.purged_up_to FROM @extschema@.provider_feed_horizon hz
        UNION ALL
        SELECT 0) s(h);

    -- What the next round would number (feed.c): rows of transactions at
    -- or after the last round's xmax or in progress then, without a
    -- position; every row without one before the first round. Rows this
    -- statement can see are committed, but for the caller's own.
    SELECT fs.last_xmax, fs.last_xip INTO st FROM @extschema@.provider_feed_state fs;
    IF st.last_xmax IS NULL THEN
        SELECT pg_catalog.count(*), t OPERATOR(pg_catalog.-) pg_catalog.min(a.occurred_at)
          INTO unnumbered_events, oldest_unnumbered_age
          FROM @extschema@.provider_audit_log a
         WHERE a.xid IS NOT NULL
           AND a.xid IS DISTINCT FROM own_xid
           AND NOT EXISTS (SELECT 1 FROM @extschema@.provider_event_positions p
                            WHERE p.audit_id OPERATOR(pg_catalog.=) a.id);
    ELSE
        SELECT pg_catalog.count(*), t OPERATOR(pg_catalog.-) pg_catalog.min(a.occurred_at)
          INTO unnumbered_events, oldest_unnumbered_age
          FROM @extschema@.provider_audit_log a
         WHERE (a.xid OPERATOR(pg_catalog.>=) st.last_xmax
                OR a.xid OPERATOR(pg_catalog.=) ANY (st.last_xip))
           AND a.xid IS DISTINCT FROM own_xid
           AND NOT EXISTS (SELECT 1 FROM @extschema@.provider_event_positions p
                            WHERE p.audit_id OPERATOR(pg_catalog.=) a.id);
    END IF;

    SELECT w.running, w.last_round_at, w.last_error, w.last_error_at
      INTO worker_running, worker_last_round_at, worker_last_error, worker_last_error_at
      FROM @extschema@.provider_worker_status() w;

    notification_queue_usage := pg_catalog.pg_notification_queue_usage();
END
$$;
REVOKE ALL ON FUNCTION @extschema@.provider_stats(interval, interval) FROM PUBLIC;
-- Counts and times only, no ids, no credentials: less than pg_monitor's
-- members already read in pg_stat_activity (see the README's Monitoring).
GRANT EXECUTE ON FUNCTION @extschema@.provider_stats(interval, interval) TO pg_monitor;
COMMENT ON FUNCTION @extschema@.provider_stats(interval, interval) IS
    'one row for monitoring: connections per status, expiring within expiring_within, overdue, leased, pending older than abandoned_after; audit rows (estimated), feed head, events not numbered yet and the oldest one''s age; this database''s worker; notification queue usage';
