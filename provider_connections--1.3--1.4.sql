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
-- Recorded once the row is gone: a later BEFORE trigger may still keep it.
CREATE TRIGGER provider_connections_deleted
    AFTER DELETE ON @extschema@.provider_connections
    FOR EACH ROW EXECUTE FUNCTION @extschema@.provider_connections_guard();
CREATE TRIGGER provider_connections_no_truncate
    BEFORE TRUNCATE ON @extschema@.provider_connections
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.provider_connections_guard();
ALTER TABLE @extschema@.provider_connections
    ENABLE ALWAYS TRIGGER provider_connections_guard;
ALTER TABLE @extschema@.provider_connections
    ENABLE ALWAYS TRIGGER provider_connections_deleted;
ALTER TABLE @extschema@.provider_connections
    ENABLE ALWAYS TRIGGER provider_connections_no_truncate;
COMMENT ON FUNCTION @extschema@.provider_connections_guard() IS
    'trigger: the status state machine and the credentials invariants on every INSERT and UPDATE; records direct status changes and deletions, refuses TRUNCATE';

/*
 * Keys that hold user_id, the distribution column on Citus (docs/citus.md).
 * Citus enforces a primary or unique key only if it contains the
 * distribution column, and it distributes the very tables CREATE EXTENSION
 * made on every node: so the keys are right from the install on, on one
 * node too. What the old keys guaranteed still holds: a connection id is a
 * UUIDv7 (62 random bits), an audit id comes from its sequence (offset by
 * the node's Citus group, src/events.c), a feed position from the one
 * assigner of its feed.
 *
 * user_id comes second in every key: the id first keeps the key's order
 * the id's, so a new row goes to the right edge of the index (ids, event
 * ids and audit ids grow with time) and the key still serves a lookup by id
 * alone. With user_id first, every insert landed at a random place in
 * indexes that outgrow shared_buffers (bench/README.md, "Scale"). A user's
 * rows are found through the indexes that lead with user_id, as in 1.3.
 *
 * The audit log's user_id joins its key, so it is never NULL: an event of a
 * call made without a user (provider_connect(NULL, ...)) stores the nil
 * UUID, which every read shows as NULL again. Positions carry their event's
 * user_id, so a feed position lives in the same shard as its event.
 */
-- A foreign key of the user's on the old keys would stop the update halfway
-- with PostgreSQL's message: say what to do instead, before changing anything.
DO $$
DECLARE
    fks text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('%I on %s', c.conname, c.conrelid::pg_catalog.regclass), ', ')
      INTO fks
      FROM pg_catalog.pg_constraint c
     WHERE c.contype OPERATOR(pg_catalog.=) 'f'
       AND c.confrelid OPERATOR(pg_catalog.=) ANY (ARRAY['@extschema@.provider_connections'::pg_catalog.regclass,
                                                         '@extschema@.provider_audit_log'::pg_catalog.regclass,
                                                         '@extschema@.provider_event_positions'::pg_catalog.regclass]);
    IF fks IS NOT NULL THEN
        RAISE EXCEPTION 'provider_connections 1.4 changes the primary keys its tables'' foreign keys refer to: %', fks
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Drop those foreign keys, update, and create them again on (id, user_id).';
    END IF;
END
$$;
ALTER TABLE @extschema@.provider_audit_log DISABLE TRIGGER provider_audit_log_append_only;
UPDATE @extschema@.provider_audit_log SET user_id = '00000000-0000-0000-0000-000000000000'
 WHERE user_id IS NULL;
ALTER TABLE @extschema@.provider_audit_log ENABLE ALWAYS TRIGGER provider_audit_log_append_only;
ALTER TABLE @extschema@.provider_audit_log
    ALTER COLUMN user_id SET NOT NULL,
    DROP CONSTRAINT provider_audit_log_pkey,
    ADD CONSTRAINT provider_audit_log_pkey PRIMARY KEY (id, user_id),
    DROP CONSTRAINT provider_audit_log_event_id_key,
    ADD CONSTRAINT provider_audit_log_event_id_key UNIQUE (event_id, user_id);

ALTER TABLE @extschema@.provider_connections
    DROP CONSTRAINT provider_connections_pkey,
    ADD CONSTRAINT provider_connections_pkey PRIMARY KEY (id, user_id);

/*
 * The call whose events record the row's latest status change. Our
 * functions set it with each change they make; the guard records a
 * ProviderConnectionStatusChanged event for an UPDATE that changes the
 * status without naming a new call here (a direct UPDATE). On Citus the
 * guard runs on the node holding the row, which is not always where the
 * function ran: the column is how it knows.
 */
ALTER TABLE @extschema@.provider_connections ADD COLUMN last_call_id uuid;
COMMENT ON COLUMN @extschema@.provider_connections.last_call_id IS
    'call_id of the function call that made the latest status change (NULL: none yet, or a direct UPDATE); an UPDATE that sets a new value declares that it records its own events';

ALTER TABLE @extschema@.provider_event_positions ADD COLUMN user_id uuid;
ALTER TABLE @extschema@.provider_event_positions DISABLE TRIGGER provider_event_positions_append_only;
UPDATE @extschema@.provider_event_positions p
   SET user_id = COALESCE((SELECT a.user_id FROM @extschema@.provider_audit_log a
                            WHERE a.id OPERATOR(pg_catalog.=) p.audit_id),
                          '00000000-0000-0000-0000-000000000000');
ALTER TABLE @extschema@.provider_event_positions ENABLE ALWAYS TRIGGER provider_event_positions_append_only;
ALTER TABLE @extschema@.provider_event_positions
    ALTER COLUMN user_id SET NOT NULL,
    DROP CONSTRAINT provider_event_positions_pkey,
    DROP CONSTRAINT provider_event_positions_audit_id_key,
    ADD CONSTRAINT provider_event_positions_pkey PRIMARY KEY (audit_id, user_id);
CREATE INDEX provider_event_positions_position_idx
    ON @extschema@.provider_event_positions (global_position);
COMMENT ON COLUMN @extschema@.provider_event_positions.user_id IS
    'the user of the event (its audit row''s user_id): keeps a position in its event''s shard on Citus';

/*
 * The xid of the node that stores an audit row. A call writes its own xid;
 * on Citus, where the call may run on the coordinator and its rows be
 * stored on a worker, this trigger stamps the storing node's xid instead,
 * which is the one that node's feed rounds compare with its snapshots.
 * provider_distribute() enables it; on one node it stays disabled (a call's
 * own xid is already the storing node's).
 */
CREATE FUNCTION @extschema@.provider_audit_log_stamp()
    RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'provider_audit_log_stamp';
REVOKE ALL ON FUNCTION @extschema@.provider_audit_log_stamp() FROM PUBLIC;
CREATE TRIGGER provider_audit_log_stamp
    BEFORE INSERT ON @extschema@.provider_audit_log
    FOR EACH ROW EXECUTE FUNCTION @extschema@.provider_audit_log_stamp();
ALTER TABLE @extschema@.provider_audit_log DISABLE TRIGGER provider_audit_log_stamp;
COMMENT ON FUNCTION @extschema@.provider_audit_log_stamp() IS
    'trigger: stamps an audit row with the xid of the node that stores it (enabled by provider_distribute)';

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
 * Replacing a function while keeping the grants users gave on it. A
 * function's arguments cannot change in place, and keeping the old one
 * beside a new one with more defaulted arguments would make every call
 * that omits them ambiguous; so such a function is dropped and created
 * anew, and the grants users gave on the old one are given again on the
 * new one, as theirs. Given by this script they would be recorded as the
 * extension's initial privileges (pg_init_privs) and so left out of
 * pg_dump; the initial privileges are set back to a fresh install's. (As
 * provider_connections--1.2--1.3.sql did for provider_connect.)
 *
 * pc_keep_grants(old) saves the grants on old before it is dropped;
 * pc_give_grants(old, new) gives them on new once it is created and its
 * own REVOKE ran. They and their table are ordinary objects, dropped at
 * the end of the script's last section that uses them: temporary ones
 * would keep Citus from installing the extension on its workers, which it
 * does inside a two-phase commit (PREPARE refuses a transaction that
 * touched temporary objects).
 */
CREATE TABLE @extschema@.pc_upgrade_kept_grants (
    function       text,
    grantee        oid,
    privilege_type text,
    is_grantable   boolean);

CREATE FUNCTION @extschema@.pc_upgrade_keep_grants(old text) RETURNS void
    LANGUAGE sql AS $$
    INSERT INTO @extschema@.pc_upgrade_kept_grants
    SELECT old, a.grantee, a.privilege_type, a.is_grantable
      FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
     WHERE p.oid = old::pg_catalog.regprocedure
       AND a.grantee <> p.proowner
$$;

CREATE FUNCTION @extschema@.pc_upgrade_give_grants(old text, new pg_catalog.regprocedure) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    g record;
    fresh pg_catalog.aclitem[];
BEGIN
    SELECT initprivs INTO fresh FROM pg_catalog.pg_init_privs
     WHERE objoid = new AND classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass;
    FOR g IN SELECT * FROM @extschema@.pc_upgrade_kept_grants k WHERE k.function = old LOOP
        EXECUTE pg_catalog.format('GRANT %s ON FUNCTION %s TO %s%s',
                                  g.privilege_type, new,
                                  -- regrole's text is already quoted where a name needs it
                                  CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::pg_catalog.regrole::text END,
                                  CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    UPDATE pg_catalog.pg_init_privs SET initprivs = fresh
     WHERE objoid = new AND classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass;
END
$$;

/*
 * provider_events_since gains a last argument, skip_purged DEFAULT false:
 * replaced as above.
 */
SELECT @extschema@.pc_upgrade_keep_grants('@extschema@.provider_events_since(bigint, integer)');

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
        -- A page of positions by their index, after where to read on from,
        -- then each one's audit row by its key (OFFSET 0 keeps that a lookup
        -- per row): planned without knowing max_events, a join would scan
        -- the whole log for a page. Where to read on from (checked against
        -- the horizon) is an InitPlan of the page, so the page comes out of
        -- its index in position order and the ORDER BY sorts nothing; the
        -- same check is also the statement's one-time filter, so that even
        -- max_events = 0 (a LIMIT 0 never starts its scan) checks. Both are
        -- evaluated in the statement's snapshot: the same value.
        SELECT p.global_position, a.id, a.event_id, a.event_type, a.action,
               NULLIF(a.user_id, '00000000-0000-0000-0000-000000000000'),
               a.connection_id, a.provider_id, a.provider_slug, a.reason,
               a.needs_user_action, a.occurred_at, a.context
          FROM (SELECT pp.global_position, pp.audit_id
                  FROM @extschema@.provider_event_positions pp
                 WHERE pp.global_position OPERATOR(pg_catalog.>)
                       (SELECT @extschema@.provider_feed_resume(
                                   after_position, skip_purged,
                                   (SELECT h.purged_up_to FROM @extschema@.provider_feed_horizon h)))
                 ORDER BY pp.global_position
                 LIMIT max_events) p
         CROSS JOIN LATERAL (SELECT * FROM @extschema@.provider_audit_log aa
                              WHERE aa.id OPERATOR(pg_catalog.=) p.audit_id
                             OFFSET 0) a
         WHERE (SELECT @extschema@.provider_feed_resume(
                           after_position, skip_purged,
                           (SELECT h.purged_up_to FROM @extschema@.provider_feed_horizon h))) IS NOT NULL
         ORDER BY p.global_position
    $$;
REVOKE ALL ON FUNCTION @extschema@.provider_events_since(bigint, integer, boolean) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_events_since(bigint, integer, boolean) IS
    'committed events after a feed position, in position order, at most max_events; 72000 behind the purge horizon unless skip_purged';

SELECT @extschema@.pc_upgrade_give_grants('@extschema@.provider_events_since(bigint, integer)',
                              '@extschema@.provider_events_since(bigint, integer, boolean)');

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
 * Refresh workers you can trust: leases on the clock with a bound and a
 * fencing token, renewing and releasing a lease, failed attempts counted
 * with backoff, abandoned OAuth flows failed, and the overview's flags.
 *
 * lease_token is the fencing token of the lease in lease_until: a claim
 * draws a new one; a lease that was ended (lease_until NULL) has none in
 * force, whatever the column still holds. refresh_failures counts the
 * consecutive failed refreshes provider_record_refresh_failure recorded,
 * next_refresh_at is when the connection may be claimed again after one;
 * a successful refresh or re-authentication resets both. A connection is
 * exhausted when refresh_failures reaches provider_connections.
 * max_refresh_attempts: no longer claimed until new credentials arrive.
 */
ALTER TABLE @extschema@.provider_connections
    ADD COLUMN lease_token uuid,
    ADD COLUMN refresh_failures integer NOT NULL DEFAULT 0
        CONSTRAINT provider_connections_refresh_failures_check CHECK (refresh_failures >= 0),
    ADD COLUMN next_refresh_at timestamptz;
COMMENT ON COLUMN @extschema@.provider_connections.lease_token IS
    'fencing token of the lease in lease_until (provider_claim_expiring); not in force once lease_until is NULL';
COMMENT ON COLUMN @extschema@.provider_connections.refresh_failures IS
    'consecutive failed refreshes (provider_record_refresh_failure); 0 after a successful refresh or re-authentication';
COMMENT ON COLUMN @extschema@.provider_connections.next_refresh_at IS
    'after a failed refresh: not claimed before this time (backoff); NULL: no wait';

/* Pending connections by age, for provider_fail_abandoned. */
CREATE INDEX provider_connections_pending_idx
    ON @extschema@.provider_connections (created_at, id)
    WHERE status = 'pending';

/*
 * The refresh settings as the calling session sees them (all but max_lease
 * are cluster-wide): read by the claim and the overview, which must not
 * depend on the library being loaded already to see them. Left executable
 * by PUBLIC, like the overview's other helpers: SHOW tells the same.
 */
CREATE FUNCTION @extschema@.provider_refresh_settings(
    OUT max_lease            interval,
    OUT refresh_backoff      interval,
    OUT refresh_backoff_max  interval,
    OUT max_refresh_attempts integer,
    OUT expiring_soon        interval)
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'provider_refresh_settings';
COMMENT ON FUNCTION @extschema@.provider_refresh_settings() IS
    'the values of max_lease, refresh_backoff, refresh_backoff_max, max_refresh_attempts and expiring_soon in force';

/*
 * provider_refresh_tokens, provider_mark_expired and provider_mark_revoked
 * gain a last argument, lease_token DEFAULT NULL (the fence: a token not in
 * force gives lease_lost); provider_claim_expiring returns the token, the
 * lease's end and the attempts so far. All four are replaced, keeping
 * their grants.
 */
SELECT @extschema@.pc_upgrade_keep_grants('@extschema@.provider_refresh_tokens(uuid, bytea, timestamptz, text)');
SELECT @extschema@.pc_upgrade_keep_grants('@extschema@.provider_mark_expired(uuid)');
SELECT @extschema@.pc_upgrade_keep_grants('@extschema@.provider_mark_revoked(uuid, text)');
SELECT @extschema@.pc_upgrade_keep_grants('@extschema@.provider_claim_expiring(interval, integer, interval)');
ALTER EXTENSION provider_connections DROP FUNCTION @extschema@.provider_refresh_tokens(uuid, bytea, timestamptz, text);
ALTER EXTENSION provider_connections DROP FUNCTION @extschema@.provider_mark_expired(uuid);
ALTER EXTENSION provider_connections DROP FUNCTION @extschema@.provider_mark_revoked(uuid, text);
ALTER EXTENSION provider_connections DROP FUNCTION @extschema@.provider_claim_expiring(interval, integer, interval);
DROP FUNCTION @extschema@.provider_refresh_tokens(uuid, bytea, timestamptz, text);
DROP FUNCTION @extschema@.provider_mark_expired(uuid);
DROP FUNCTION @extschema@.provider_mark_revoked(uuid, text);
DROP FUNCTION @extschema@.provider_claim_expiring(interval, integer, interval);

CREATE FUNCTION @extschema@.provider_refresh_tokens(
    connection_id   uuid,
    credentials     bytea,
    expires_at      timestamptz DEFAULT NULL,
    credential_type text DEFAULT NULL,
    lease_token     uuid DEFAULT NULL)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_refresh_tokens';
CREATE FUNCTION @extschema@.provider_mark_expired(connection_id uuid, lease_token uuid DEFAULT NULL)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_mark_expired';
CREATE FUNCTION @extschema@.provider_mark_revoked(connection_id uuid, reason text DEFAULT NULL,
                                                  lease_token uuid DEFAULT NULL)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_mark_revoked';

/*
 * Refresh workers' queue: active connections with refreshable credentials
 * expiring within the window, not leased, not waiting out a backoff and not
 * exhausted, soonest first, each leased to the caller with a new token.
 * Every time is the clock's when the statement runs (clock_timestamp()),
 * never the transaction's start: a claim made late in a long transaction
 * holds its full lease, and a claimer in an old transaction does not see
 * a lease as running that has run out. Rows another claimer holds are
 * skipped (SKIP LOCKED).
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
        credentials_expires_at timestamptz,
        lease_token            uuid,
        lease_until            timestamptz,
        refresh_attempts       integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    s record;
    t timestamptz;
    cand record;
BEGIN
    IF within IS NULL OR max_rows IS NULL OR lease IS NULL THEN
        RAISE EXCEPTION 'provider_claim_expiring: within, max_rows and lease cannot be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF max_rows < 1 OR lease <= interval '0' THEN
        RAISE EXCEPTION 'provider_claim_expiring: max_rows must be positive and lease longer than zero'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO s FROM @extschema@.provider_refresh_settings();
    IF lease > s.max_lease THEN
        RAISE EXCEPTION 'provider_claim_expiring: lease % is longer than provider_connections.max_lease (%)', lease, s.max_lease
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A worker that dies holding a lease delays its connections until the lease ends.',
                  HINT = 'Claim with a shorter lease and renew it with provider_renew_lease while the provider call runs.';
    END IF;
    t := clock_timestamp();
    IF @extschema@.provider_distributed() THEN
        -- Citus locks rows in one user's shard only (FOR UPDATE needs the
        -- distribution column): read the candidates from every shard
        -- unlocked, then claim each in its own shard if it is still
        -- claimable, waiting for a caller that holds it instead of skipping.
        -- EXECUTE plans each statement for its values, as Citus needs.
        FOR cand IN EXECUTE
            'SELECT c.user_id, c.id FROM @extschema@.provider_connections c
              WHERE c.status OPERATOR(pg_catalog.=) ''active''
                AND c.credentials_expires_at IS NOT NULL
                AND c.credentials_expires_at OPERATOR(pg_catalog.<=) ($1 OPERATOR(pg_catalog.+) $2)
                AND @extschema@.provider_credential_type_refreshable(c.credential_type)
                AND (c.lease_until IS NULL OR c.lease_until OPERATOR(pg_catalog.<=) $1)
                AND (c.next_refresh_at IS NULL OR c.next_refresh_at OPERATOR(pg_catalog.<=) $1)
                AND c.refresh_failures OPERATOR(pg_catalog.<) $3
              ORDER BY c.credentials_expires_at
              LIMIT $4'
            USING t, within, s.max_refresh_attempts, max_rows
        LOOP
            -- Citus refuses volatile functions in a distributed UPDATE:
            -- the time and the token are values.
            t := clock_timestamp();
            RETURN QUERY EXECUTE
                'UPDATE @extschema@.provider_connections c
                    SET lease_until = $5 OPERATOR(pg_catalog.+) $3, lease_token = $6
                  WHERE c.user_id OPERATOR(pg_catalog.=) $1 AND c.id OPERATOR(pg_catalog.=) $2
                    AND c.status OPERATOR(pg_catalog.=) ''active''
                    AND c.credentials_expires_at IS NOT NULL
                    AND (c.lease_until IS NULL OR c.lease_until OPERATOR(pg_catalog.<=) $5)
                    AND (c.next_refresh_at IS NULL OR c.next_refresh_at OPERATOR(pg_catalog.<=) $5)
                    AND c.refresh_failures OPERATOR(pg_catalog.<) $4
                RETURNING c.id, c.user_id, c.provider_id, c.provider_slug::pg_catalog.text, c.credential_type,
                          c.credentials_expires_at, c.lease_token, c.lease_until, c.refresh_failures'
                USING cand.user_id, cand.id, lease, s.max_refresh_attempts, t, gen_random_uuid();
        END LOOP;
        RETURN;
    END IF;
    RETURN QUERY
    WITH claimable AS (
        SELECT c.id
          FROM @extschema@.provider_connections c
         WHERE c.status OPERATOR(pg_catalog.=) 'active'
           AND c.credentials_expires_at IS NOT NULL
           AND c.credentials_expires_at OPERATOR(pg_catalog.<=) (t OPERATOR(pg_catalog.+) within)
           AND @extschema@.provider_credential_type_refreshable(c.credential_type)
           AND (c.lease_until IS NULL OR c.lease_until OPERATOR(pg_catalog.<=) t)
           AND (c.next_refresh_at IS NULL OR c.next_refresh_at OPERATOR(pg_catalog.<=) t)
           AND c.refresh_failures OPERATOR(pg_catalog.<) s.max_refresh_attempts
         ORDER BY c.credentials_expires_at
         LIMIT max_rows
           FOR UPDATE SKIP LOCKED)
    UPDATE @extschema@.provider_connections c
       SET lease_until = t OPERATOR(pg_catalog.+) lease, lease_token = pg_catalog.gen_random_uuid()
      FROM claimable
     WHERE c.id OPERATOR(pg_catalog.=) claimable.id
    RETURNING c.id, c.user_id, c.provider_id, c.provider_slug::text, c.credential_type,
              c.credentials_expires_at, c.lease_token, c.lease_until, c.refresh_failures;
END
$$;

REVOKE ALL ON FUNCTION @extschema@.provider_refresh_tokens(uuid, bytea, timestamptz, text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_mark_expired(uuid, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_mark_revoked(uuid, text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_claim_expiring(interval, integer, interval) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_refresh_tokens(uuid, bytea, timestamptz, text, uuid) IS
    'replace an active connection''s credentials, ending its lease and its failed attempts; with lease_token, only while that lease is in force (else lease_lost); returns a provider_result';
COMMENT ON FUNCTION @extschema@.provider_mark_expired(uuid, uuid) IS
    'active to expired, credentials kept; with lease_token, only while that lease is in force; returns a provider_result';
COMMENT ON FUNCTION @extschema@.provider_mark_revoked(uuid, text, uuid) IS
    'active to revoked, credentials cleared; with lease_token, only while that lease is in force; returns a provider_result';
COMMENT ON FUNCTION @extschema@.provider_claim_expiring(interval, integer, interval) IS
    'lease up to max_rows active refreshable connections expiring within the window, not in backoff nor exhausted, to the caller, each with a fencing token';

SELECT @extschema@.pc_upgrade_give_grants('@extschema@.provider_refresh_tokens(uuid, bytea, timestamptz, text)',
                              '@extschema@.provider_refresh_tokens(uuid, bytea, timestamptz, text, uuid)');
SELECT @extschema@.pc_upgrade_give_grants('@extschema@.provider_mark_expired(uuid)',
                              '@extschema@.provider_mark_expired(uuid, uuid)');
SELECT @extschema@.pc_upgrade_give_grants('@extschema@.provider_mark_revoked(uuid, text)',
                              '@extschema@.provider_mark_revoked(uuid, text, uuid)');
SELECT @extschema@.pc_upgrade_give_grants('@extschema@.provider_claim_expiring(interval, integer, interval)',
                              '@extschema@.provider_claim_expiring(interval, integer, interval)');

/*
 * A running lease, extended from now by lease (a slow provider), or given
 * back at once. Neither writes events: a lease is coordination between
 * workers, not a change of the connection's lifecycle, and a renewal every
 * few seconds would flood the trail; what the worker then does (refresh,
 * failure, mark) is recorded. Both act only while the token is in force.
 */
CREATE FUNCTION @extschema@.provider_renew_lease(user_id uuid, connection_id uuid, lease_token uuid,
                                                 lease interval)
    RETURNS timestamptz
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    s record;
    t timestamptz;
    renewed timestamptz;
BEGIN
    IF lease IS NULL OR lease <= interval '0' THEN
        RAISE EXCEPTION 'provider_renew_lease: lease must be longer than zero'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO s FROM @extschema@.provider_refresh_settings();
    IF lease > s.max_lease THEN
        RAISE EXCEPTION 'provider_renew_lease: lease % is longer than provider_connections.max_lease (%)', lease, s.max_lease
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A worker that dies holding a lease delays its connections until the lease ends.',
                  HINT = 'Renew more often with a shorter lease.';
    END IF;
    t := clock_timestamp();
    UPDATE @extschema@.provider_connections c
       SET lease_until = t OPERATOR(pg_catalog.+) lease
     WHERE c.user_id OPERATOR(pg_catalog.=) provider_renew_lease.user_id
       AND c.id OPERATOR(pg_catalog.=) provider_renew_lease.connection_id
       AND c.lease_token OPERATOR(pg_catalog.=) provider_renew_lease.lease_token
       AND c.lease_until IS NOT NULL
    RETURNING c.lease_until INTO renewed;
    RETURN renewed;
END
$$;
-- PL/pgSQL, not SQL: Citus cannot plan a SQL function's parameters.
CREATE FUNCTION @extschema@.provider_release_lease(user_id uuid, connection_id uuid, lease_token uuid)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    UPDATE @extschema@.provider_connections c
       SET lease_until = NULL
     WHERE c.user_id OPERATOR(pg_catalog.=) provider_release_lease.user_id
       AND c.id OPERATOR(pg_catalog.=) provider_release_lease.connection_id
       AND c.lease_token OPERATOR(pg_catalog.=) provider_release_lease.lease_token
       AND c.lease_until IS NOT NULL;
    RETURN FOUND;
END
$$;
/*
 * The owner of a connection found by id alone (NULL: none), for the forms
 * that take no user: planned with its value (EXECUTE), so that Citus can
 * run it on every shard.
 */
CREATE FUNCTION @extschema@.provider_connection_owner(connection_id uuid)
    RETURNS uuid
    LANGUAGE plpgsql STABLE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    owner uuid;
BEGIN
    EXECUTE 'SELECT user_id FROM @extschema@.provider_connections WHERE id OPERATOR(pg_catalog.=) $1'
       INTO owner USING connection_id;
    RETURN owner;
END
$$;
CREATE FUNCTION @extschema@.provider_renew_lease(connection_id uuid, lease_token uuid, lease interval)
    RETURNS timestamptz
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT @extschema@.provider_renew_lease(
               @extschema@.provider_connection_owner(connection_id), connection_id, lease_token, lease)
$$;
CREATE FUNCTION @extschema@.provider_release_lease(connection_id uuid, lease_token uuid)
    RETURNS boolean
    LANGUAGE sql VOLATILE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT COALESCE(@extschema@.provider_release_lease(
               @extschema@.provider_connection_owner(connection_id), connection_id, lease_token), false)
$$;
REVOKE ALL ON FUNCTION @extschema@.provider_renew_lease(uuid, uuid, uuid, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_release_lease(uuid, uuid, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_connection_owner(uuid) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_renew_lease(uuid, uuid, uuid, interval) IS
    'provider_renew_lease of a connection of user_id (on Citus: routed to that user''s shard)';
COMMENT ON FUNCTION @extschema@.provider_release_lease(uuid, uuid, uuid) IS
    'provider_release_lease of a connection of user_id (on Citus: routed to that user''s shard)';
COMMENT ON FUNCTION @extschema@.provider_connection_owner(uuid) IS
    'internal: the user_id of a connection found by id alone';
REVOKE ALL ON FUNCTION @extschema@.provider_renew_lease(uuid, uuid, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_release_lease(uuid, uuid) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_renew_lease(uuid, uuid, interval) IS
    'extend a lease in force to now plus lease (at most max_lease); returns its new end, NULL when the token is not in force (no events)';
COMMENT ON FUNCTION @extschema@.provider_release_lease(uuid, uuid) IS
    'end a lease in force at once, so the connection can be claimed again; returns whether it was in force (no events)';

/* A failed refresh, counted, with backoff (src/refresh.c). */
CREATE FUNCTION @extschema@.provider_record_refresh_failure(
    connection_id uuid,
    lease_token   uuid,
    reason        text,
    retry_after   interval DEFAULT NULL)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_record_refresh_failure';
REVOKE ALL ON FUNCTION @extschema@.provider_record_refresh_failure(uuid, uuid, text, interval) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_record_refresh_failure(uuid, uuid, text, interval) IS
    'record a failed refresh of an active connection: counts it, ends the lease, sets the backoff (or retry_after); returns a provider_result';

/* Pending connections whose OAuth flow was abandoned (src/lifecycle.c). */
CREATE FUNCTION @extschema@.provider_fail_abandoned(older_than interval DEFAULT '1 hour')
    RETURNS bigint
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_fail_abandoned';
REVOKE ALL ON FUNCTION @extschema@.provider_fail_abandoned(interval) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_fail_abandoned(interval) IS
    'move pending connections created more than older_than ago to failed (reason abandoned), with their events; returns how many';

/*
 * The overview: expiring soon only while active, within
 * provider_connections.expiring_soon; and the refresh attempts. Every
 * column of provider_connections but the sealed credentials and the lease
 * token (the fence belongs to the worker holding the lease).
 * CREATE OR REPLACE keeps its grants.
 */
CREATE OR REPLACE VIEW @extschema@.provider_connections_overview AS
SELECT c.id, c.user_id, c.provider_id, c.provider_slug, c.status, c.alias, c.credential_type,
       c.credentials_expires_at, c.connected_at, c.last_sync_at, c.created_at, c.updated_at,
       c.lease_until,
       c.status = 'active' AS is_connected,
       @extschema@.provider_status_needs_reauthentication(c.status) AS needs_reauthentication,
       coalesce(c.credentials_expires_at <= now(), false) AS is_credentials_expired,
       coalesce(c.status = 'active'
                AND c.credentials_expires_at > now()
                AND c.credentials_expires_at <= now() + s.expiring_soon, false)
           AS is_credentials_expiring_soon,
       c.status = 'active' AS can_sync,
       coalesce(@extschema@.provider_credential_type_refreshable(c.credential_type), false)
           AS supports_refresh,
       c.refresh_failures,
       c.next_refresh_at,
       c.refresh_failures >= s.max_refresh_attempts AS is_refresh_exhausted
  FROM @extschema@.provider_connections c
 CROSS JOIN @extschema@.provider_refresh_settings() s;
COMMENT ON VIEW @extschema@.provider_connections_overview IS
    'every connection without its sealed credentials and lease token, with what applications ask of it';

DROP FUNCTION @extschema@.pc_upgrade_keep_grants(text);
DROP FUNCTION @extschema@.pc_upgrade_give_grants(text, pg_catalog.regprocedure);
DROP TABLE @extschema@.pc_upgrade_kept_grants;

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
    expiring_within interval DEFAULT NULL,
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
    OUT in_backoff bigint,
    OUT refresh_exhausted bigint,
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
    rs record;
    pages double precision;
    own_xid xid8 := pg_catalog.pg_current_xact_id_if_assigned();
BEGIN
    -- The window of the overview's is_credentials_expiring_soon unless
    -- the caller names another; the attempts that exhaust a refresh.
    SELECT * INTO rs FROM @extschema@.provider_refresh_settings();
    expiring_within := COALESCE(expiring_within, rs.expiring_soon);
    IF abandoned_after IS NULL THEN
        RAISE EXCEPTION 'provider_stats: abandoned_after cannot be null'
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
           pg_catalog.count(*) FILTER (WHERE c.status OPERATOR(pg_catalog.=) 'active'
                                         AND c.next_refresh_at OPERATOR(pg_catalog.>) t
                                         AND c.refresh_failures OPERATOR(pg_catalog.<) rs.max_refresh_attempts),
           pg_catalog.count(*) FILTER (WHERE c.status OPERATOR(pg_catalog.=) 'active'
                                         AND c.refresh_failures OPERATOR(pg_catalog.>=) rs.max_refresh_attempts),
           pg_catalog.count(*) FILTER (WHERE c.status OPERATOR(pg_catalog.=) 'pending'
                                         AND c.created_at OPERATOR(pg_catalog.<) abandoned_before)
      INTO pending, active, expired, revoked, failed, disconnected,
           expiring_soon, overdue, leased, in_backoff, refresh_exhausted, pending_abandoned
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
                            WHERE p.user_id OPERATOR(pg_catalog.=) a.user_id
                              AND p.audit_id OPERATOR(pg_catalog.=) a.id);
    ELSE
        SELECT pg_catalog.count(*), t OPERATOR(pg_catalog.-) pg_catalog.min(a.occurred_at)
          INTO unnumbered_events, oldest_unnumbered_age
          FROM @extschema@.provider_audit_log a
         WHERE (a.xid OPERATOR(pg_catalog.>=) st.last_xmax
                OR a.xid OPERATOR(pg_catalog.=) ANY (st.last_xip))
           AND a.xid IS DISTINCT FROM own_xid
           AND NOT EXISTS (SELECT 1 FROM @extschema@.provider_event_positions p
                            WHERE p.user_id OPERATOR(pg_catalog.=) a.user_id
                              AND p.audit_id OPERATOR(pg_catalog.=) a.id);
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
    'one row for monitoring: connections per status, expiring within expiring_within (default: provider_connections.expiring_soon), overdue, leased, in refresh backoff, refresh exhausted, pending older than abandoned_after; audit rows (estimated), feed head, events not numbered yet and the oldest one''s age; this database''s worker; notification queue usage';

/*
 * Where the worker's notifications have got to, kept with each round that
 * moves it: a worker that starts afresh (after a server restart, say) goes
 * on from there, so the events a reader numbered while no worker ran are
 * still notified, once. NULL until the first round sets it to the head it
 * found (on a restore too: provider_feed_state is not dumped, and restored
 * events are not notified again).
 */
ALTER TABLE @extschema@.provider_feed_state ADD COLUMN notified_upto bigint;
COMMENT ON COLUMN @extschema@.provider_feed_state.notified_upto IS
    'the feed position up to which the worker has gone through the events to notify; NULL before the first round';

/*
 * Citus (docs/citus.md). The functions that find a connection by its id
 * alone also come with the owner's id first: they then look among that
 * user's connections only, which on Citus is one shard on one node; by id
 * alone they first find the owner on every shard. Every other argument is
 * the same, and none has a default in the user-first form: so a call is
 * of one form or the other by its number of arguments alone, also when
 * they are untyped literals (a psql variable, a driver's text parameter),
 * which could otherwise match both.
 */
CREATE FUNCTION @extschema@.provider_refresh_tokens(
    user_id         uuid,
    connection_id   uuid,
    credentials     bytea,
    expires_at      timestamptz,
    credential_type text,
    lease_token     uuid)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_refresh_tokens_of_user';
CREATE FUNCTION @extschema@.provider_credentials(user_id uuid, connection_id uuid)
    RETURNS bytea
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_credentials_of_user';
CREATE FUNCTION @extschema@.provider_mark_failed(user_id uuid, connection_id uuid, reason text)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_mark_failed_of_user';
CREATE FUNCTION @extschema@.provider_mark_expired(user_id uuid, connection_id uuid, lease_token uuid)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_mark_expired_of_user';
CREATE FUNCTION @extschema@.provider_mark_revoked(user_id uuid, connection_id uuid, reason text,
                                                  lease_token uuid)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_mark_revoked_of_user';
CREATE FUNCTION @extschema@.provider_record_sync(user_id uuid, connection_id uuid)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_record_sync_of_user';
CREATE FUNCTION @extschema@.provider_record_refresh_failure(
    user_id       uuid,
    connection_id uuid,
    lease_token   uuid,
    reason        text,
    retry_after   interval)
    RETURNS @extschema@.provider_result
    LANGUAGE c VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'provider_record_refresh_failure_of_user';

REVOKE ALL ON FUNCTION @extschema@.provider_refresh_tokens(uuid, uuid, bytea, timestamptz, text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_credentials(uuid, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_mark_failed(uuid, uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_mark_expired(uuid, uuid, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_mark_revoked(uuid, uuid, text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_record_sync(uuid, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_record_refresh_failure(uuid, uuid, uuid, text, interval) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_refresh_tokens(uuid, uuid, bytea, timestamptz, text, uuid) IS
    'provider_refresh_tokens of a connection of user_id (on Citus: routed to that user''s shard)';
COMMENT ON FUNCTION @extschema@.provider_credentials(uuid, uuid) IS
    'provider_credentials of a connection of user_id (NULL for another user''s; on Citus: routed to that user''s shard)';
COMMENT ON FUNCTION @extschema@.provider_mark_failed(uuid, uuid, text) IS
    'provider_mark_failed of a connection of user_id (on Citus: routed to that user''s shard)';
COMMENT ON FUNCTION @extschema@.provider_mark_expired(uuid, uuid, uuid) IS
    'provider_mark_expired of a connection of user_id, lease_token required (NULL: no fence) (on Citus: routed to that user''s shard)';
COMMENT ON FUNCTION @extschema@.provider_mark_revoked(uuid, uuid, text, uuid) IS
    'provider_mark_revoked of a connection of user_id (on Citus: routed to that user''s shard)';
COMMENT ON FUNCTION @extschema@.provider_record_sync(uuid, uuid) IS
    'provider_record_sync of a connection of user_id (on Citus: routed to that user''s shard)';
COMMENT ON FUNCTION @extschema@.provider_record_refresh_failure(uuid, uuid, uuid, text, interval) IS
    'provider_record_refresh_failure of a connection of user_id (on Citus: routed to that user''s shard)';

CREATE FUNCTION @extschema@.provider_distributed()
    RETURNS boolean
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'provider_distributed';
COMMENT ON FUNCTION @extschema@.provider_distributed() IS
    'whether Citus distributes the extension''s tables in this database (provider_distribute)';

/*
 * Distribute the extension's tables with Citus, by user_id, co-located, from
 * the coordinator: a call then touches one shard group on one node. Also
 * enables the audit log's xid stamp (src/audit_stamp.c). Citus refuses
 * tables with triggers unless citus.enable_unsafe_triggers is on, because it
 * cannot check that a trigger touches only its own shard; ours touch only
 * their row and, for the guard's events, the co-located audit shard of the
 * same user: so it is turned on for this transaction only. Citus cannot
 * undistribute a table an extension owns: this cannot be undone but by
 * DROP EXTENSION.
 */
CREATE FUNCTION @extschema@.provider_distribute(shard_count integer DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus') THEN
        RAISE EXCEPTION 'provider_distribute: Citus is not installed in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'CREATE EXTENSION citus first, on the coordinator.';
    END IF;
    IF @extschema@.provider_distributed() THEN
        RAISE NOTICE 'provider_distribute: the tables are already distributed';
        RETURN;
    END IF;
    IF shard_count IS NOT NULL AND shard_count < 1 THEN
        RAISE EXCEPTION 'provider_distribute: shard_count must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    ALTER TABLE @extschema@.provider_audit_log ENABLE ALWAYS TRIGGER provider_audit_log_stamp;
    IF shard_count IS NULL THEN
        EXECUTE pg_catalog.format('SELECT pg_catalog.create_distributed_table(%L, %L)',
                                  '@extschema@.provider_connections', 'user_id');
    ELSE
        EXECUTE pg_catalog.format('SELECT pg_catalog.create_distributed_table(%L, %L, shard_count => %s)',
                                  '@extschema@.provider_connections', 'user_id', shard_count);
    END IF;
    EXECUTE pg_catalog.format('SELECT pg_catalog.create_distributed_table(%L, %L, colocate_with => %L)',
                              '@extschema@.provider_audit_log', 'user_id', '@extschema@.provider_connections');
    EXECUTE pg_catalog.format('SELECT pg_catalog.create_distributed_table(%L, %L, colocate_with => %L)',
                              '@extschema@.provider_event_positions', 'user_id', '@extschema@.provider_connections');
END
$$;
REVOKE ALL ON FUNCTION @extschema@.provider_distribute(integer) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_distribute(integer) IS
    'Citus: distribute the extension''s tables by user_id, co-located, from the coordinator (cannot be undone but by DROP EXTENSION)';

/*
 * The feed of a distributed install (src/feed_shards.c): one feed per shard
 * of provider_audit_log, numbered by the worker of the node holding it.
 * provider_feed_shard_state keeps each local placement's round facts on
 * its node (never distributed, not dumped: xids are the node's own).
 * provider_feed_shards() lists the feeds and where each is;
 * provider_shard_events_since reads one, on the node that holds it.
 */
CREATE TABLE @extschema@.provider_feed_shard_state (
    placement_id  bigint PRIMARY KEY,
    shard_id      bigint NOT NULL,
    shard_relid   oid,
    last_xmax     xid8,
    last_xip      xid8[],
    notified_upto bigint,
    position_floor bigint
);
REVOKE ALL ON TABLE @extschema@.provider_feed_shard_state FROM PUBLIC;
COMMENT ON TABLE @extschema@.provider_feed_shard_state IS
    'Citus: where the feed rounds of each audit shard placed on this node stand (one row per placement)';
COMMENT ON COLUMN @extschema@.provider_feed_shard_state.shard_relid IS
    'the audit shard table the row''s facts are about: Citus keeps a placement''s id when the shard moves away and back, the table is new, so the facts start afresh';

/*
 * Two kinds of rows in provider_event_positions on a distributed install,
 * each a fact that must travel with its user's rows through moves and
 * splits (Citus copies a row to the shard its user_id hashes to):
 *	- a user's purge horizon: audit id 0 (which no event has), at the
 *	  highest position of that user's events a purge removed; a shard's
 *	  horizon is the highest of its users' (the partial index makes that
 *	  one probe);
 *	- notify_pending: a position numbered by a round that did not send its
 *	  worker-mode notification (notifications held back or failed); the
 *	  round that sends it clears it, so a node a shard moves to starts
 *	  notifying at the first one still pending.
 * Neither is ever set on one node.
 */
ALTER TABLE @extschema@.provider_event_positions
    ADD COLUMN notify_pending boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN @extschema@.provider_event_positions.notify_pending IS
    'Citus: numbered on its node without its worker-mode notification sent yet (src/feed_shards.c)';
CREATE INDEX provider_event_positions_horizon_idx
    ON @extschema@.provider_event_positions (global_position) WHERE audit_id = 0;
CREATE INDEX provider_event_positions_pending_idx
    ON @extschema@.provider_event_positions (global_position) WHERE notify_pending;

/*
 * Where a read of a shard's feed goes on from, called in the snapshot of the
 * read itself (as provider_feed_resume on one node): after_position, or,
 * behind the shard's purge horizon, an error 72000 or the horizon when
 * skip_purged.
 */
CREATE FUNCTION @extschema@.provider_shard_feed_resume(
    shard_id bigint, after_position bigint, skip_purged boolean, horizon bigint)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF horizon IS NULL OR after_position >= horizon THEN
        RETURN after_position;
    END IF;
    IF skip_purged THEN
        RETURN horizon;
    END IF;
    RAISE EXCEPTION 'provider_shard_events_since: events of shard % after position % were purged, up to position %',
                    shard_id, after_position, horizon
        USING ERRCODE = '72000',
              DETAIL = pg_catalog.format('The purge horizon of shard %s is %s.', shard_id, horizon),
              HINT = 'To continue after the purged events, call provider_shard_events_since with skip_purged => true.';
END
$$;
REVOKE ALL ON FUNCTION @extschema@.provider_shard_feed_resume(bigint, bigint, boolean, bigint) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_shard_feed_resume(bigint, bigint, boolean, bigint) IS
    'internal (Citus): where provider_shard_events_since reads on from; raises 72000 for a position behind the shard''s purge horizon';

CREATE FUNCTION @extschema@.provider_feed_shards(
    OUT shard_id bigint,
    OUT node_name text,
    OUT node_port integer,
    OUT min_hash integer,
    OUT max_hash integer)
    RETURNS SETOF record
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF NOT @extschema@.provider_distributed() THEN
        RAISE EXCEPTION 'provider_feed_shards: the tables are not distributed'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'On one node, read the feed with provider_events_since.';
    END IF;
    RETURN QUERY EXECUTE
        'SELECT s.shardid, n.nodename::pg_catalog.text, n.nodeport,
                s.shardminvalue::pg_catalog.int4, s.shardmaxvalue::pg_catalog.int4
           FROM pg_catalog.pg_dist_shard s
           JOIN pg_catalog.pg_dist_placement pl ON pl.shardid OPERATOR(pg_catalog.=) s.shardid
           JOIN pg_catalog.pg_dist_node n ON n.groupid OPERATOR(pg_catalog.=) pl.groupid
                AND n.noderole OPERATOR(pg_catalog.=) ''primary'' AND n.isactive
          WHERE s.logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass
          ORDER BY s.shardid'
        USING '@extschema@.provider_audit_log';
END
$$;
REVOKE ALL ON FUNCTION @extschema@.provider_feed_shards() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_feed_shards() IS
    'Citus: every feed (one per audit shard), the node that holds it and its users'' hash range (a shard split from another starts at the position a consumer had reached in the shard whose range held it)';

CREATE FUNCTION @extschema@.provider_shard_events_since(
    shard_id       bigint,
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
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET jit = off
    AS $$
DECLARE
    positions_shard bigint;
BEGIN
    IF NOT @extschema@.provider_distributed() THEN
        RAISE EXCEPTION 'provider_shard_events_since: the tables are not distributed'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'On one node, read the feed with provider_events_since.';
    END IF;
    IF max_events < 0 THEN
        RAISE EXCEPTION 'provider_shard_events_since: max_events must not be negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE 'SELECT ps.shardid FROM pg_catalog.pg_dist_shard s
               JOIN pg_catalog.pg_dist_shard ps
                 ON ps.logicalrelid OPERATOR(pg_catalog.=) $3::pg_catalog.regclass
                AND ps.shardminvalue OPERATOR(pg_catalog.=) s.shardminvalue
              WHERE s.shardid OPERATOR(pg_catalog.=) $1
                AND s.logicalrelid OPERATOR(pg_catalog.=) $2::pg_catalog.regclass'
       INTO positions_shard
      USING shard_id, '@extschema@.provider_audit_log', '@extschema@.provider_event_positions';
    IF positions_shard IS NULL THEN
        RAISE EXCEPTION 'provider_shard_events_since: % is not a shard of provider_audit_log', shard_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'provider_feed_shards() lists the feeds; a split shard''s feed ends with it.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_placement pl
                    WHERE pl.shardid OPERATOR(pg_catalog.=) provider_shard_events_since.shard_id
                      AND pl.groupid OPERATOR(pg_catalog.=) (SELECT groupid FROM pg_catalog.pg_dist_local_group)) THEN
        RAISE EXCEPTION 'provider_shard_events_since: shard % is not on this node', shard_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'provider_feed_shards() names the node that holds it now; keep the position and read there.';
    END IF;
    -- One statement, so one snapshot, as provider_events_since on one node:
    -- a purge that commits while the read runs is either wholly seen (its
    -- horizon, 72000) or not at all (its events). The shard's horizon is the
    -- highest of its users' horizon rows (audit id 0, src/feed_shards.c), one
    -- probe of their partial index; where to read on from is an InitPlan of
    -- the page, and also the one-time filter, so that max_events = 0 checks.
    RETURN QUERY EXECUTE pg_catalog.format(
        'SELECT p.global_position, a.id, a.event_id, a.event_type, a.action,
                NULLIF(a.user_id, ''00000000-0000-0000-0000-000000000000''),
                a.connection_id, a.provider_id, a.provider_slug, a.reason,
                a.needs_user_action, a.occurred_at, a.context
           FROM (SELECT pp.global_position, pp.audit_id, pp.user_id FROM %1$s.%2$I pp
                  WHERE pp.global_position OPERATOR(pg_catalog.>)
                        (SELECT %1$s.provider_shard_feed_resume($3, $1, $4,
                                    (SELECT pg_catalog.max(h.global_position) FROM %1$s.%2$I h
                                      WHERE h.audit_id OPERATOR(pg_catalog.=) 0)))
                  ORDER BY pp.global_position LIMIT $2) p
           CROSS JOIN LATERAL (SELECT * FROM %1$s.%3$I aa
                                WHERE aa.user_id OPERATOR(pg_catalog.=) p.user_id
                                  AND aa.id OPERATOR(pg_catalog.=) p.audit_id OFFSET 0) a
          WHERE (SELECT %1$s.provider_shard_feed_resume($3, $1, $4,
                            (SELECT pg_catalog.max(h.global_position) FROM %1$s.%2$I h
                              WHERE h.audit_id OPERATOR(pg_catalog.=) 0))) IS NOT NULL
          ORDER BY p.global_position',
        '@extschema@', 'provider_event_positions_' || positions_shard,
        'provider_audit_log_' || shard_id)
      USING after_position, max_events, shard_id, skip_purged;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.provider_shard_events_since(bigint, bigint, integer, boolean) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.provider_shard_events_since(bigint, bigint, integer, boolean) IS
    'Citus: the events of one shard''s feed after after_position, in its order, on the node that holds the shard; 72000 behind the shard''s purge horizon unless skip_purged';
