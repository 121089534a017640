-- provider_stats() (1.4): a known set of connections in every status,
-- leased, overdue and expiring ones, abandoned and recent pending ones, and
-- events left unnumbered; each column checked against a count made here
-- with plain SQL over the tables. The worker's columns are checked with a
-- worker running in t/017_exporter.pl.
-- A fresh install of its own, so that this file runs in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
\set VERBOSITY terse
\set u '''51515151-5151-5151-5151-515151515151'''
\set p '''aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa'''

-- Empty: zeros, the log counted (never analyzed), head 0.
SELECT pending, active, expired, revoked, failed, disconnected, expiring_soon, overdue,
       leased, in_backoff, refresh_exhausted, pending_abandoned, audit_rows_estimate, feed_head,
       unnumbered_events, oldest_unnumbered_age
  FROM provider_stats();

-- Active: two expiring within 5 minutes, one within 1 day, one that never
-- expires, two overdue (moved into the past by hand: a connect refuses a
-- past expiry).
SELECT connection_id AS soon1 FROM provider_connect(:u, :p, 'soon1', '\x01', 'oauth2', now() + interval '2 minutes') \gset
SELECT connection_id AS soon2 FROM provider_connect(:u, :p, 'soon2', '\x01', 'link_token', now() + interval '4 minutes') \gset
SELECT connection_id AS far FROM provider_connect(:u, :p, 'far', '\x01', 'oauth2', now() + interval '1 day') \gset
SELECT ok FROM provider_connect(:u, :p, 'never', '\x01', 'oauth2');
SELECT connection_id AS over1 FROM provider_connect(:u, :p, 'over1', '\x01', 'oauth2', now() + interval '1 hour') \gset
SELECT connection_id AS over2 FROM provider_connect(:u, :p, 'over2', '\x01', 'oauth2', now() + interval '1 hour') \gset
UPDATE provider_connections SET credentials_expires_at = now() - interval '1 minute' WHERE id = :'over1';
UPDATE provider_connections SET credentials_expires_at = now() - interval '10 minutes' WHERE id = :'over2';
-- expired (its expiry in the past too: not counted as overdue, which is
-- for active ones), revoked, failed, disconnected.
SELECT connection_id AS exp FROM provider_connect(:u, :p, 'exp', '\x01', 'oauth2', now() + interval '1 hour') \gset
SELECT ok FROM provider_mark_expired(:'exp');
UPDATE provider_connections SET credentials_expires_at = now() - interval '1 minute' WHERE id = :'exp';
SELECT connection_id AS rev FROM provider_connect(:u, :p, 'rev', '\x01', 'oauth2') \gset
SELECT ok FROM provider_mark_revoked(:'rev', 'invalid_grant');
SELECT connection_id AS fail FROM provider_begin_connect(:u, :p, 'fail') \gset
SELECT ok FROM provider_mark_failed(:'fail', 'denied');
SELECT connection_id AS gone FROM provider_connect(:u, :p, 'gone', '\x01', 'oauth2') \gset
SELECT ok FROM provider_disconnect(:u, :'gone');
-- Pending: two begun 2 hours ago (the clock pinned back for their
-- created_at), one 30 minutes ago, one now.
SELECT set_config('provider_connections.test_clock',
                  to_char((now() - interval '2 hours') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US+00'), false) IS NOT NULL AS pinned;
SELECT ok FROM provider_begin_connect(:u, :p, 'old1');
SELECT ok FROM provider_begin_connect(:u, :p, 'old2');
SELECT set_config('provider_connections.test_clock',
                  to_char((now() - interval '30 minutes') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US+00'), false) IS NOT NULL AS pinned;
SELECT ok FROM provider_begin_connect(:u, :p, 'half');
RESET provider_connections.test_clock;
SELECT ok FROM provider_begin_connect(:u, :p, 'new');
-- Leases: the two soonest claimed (the overdue ones), one ran out.
SELECT provider_slug FROM provider_claim_expiring('5 minutes', 2, '1 minute') ORDER BY 1;
UPDATE provider_connections SET lease_until = now() - interval '1 second' WHERE id = :'far';
-- Refresh attempts (as provider_record_refresh_failure leaves them): one
-- connection waiting out its backoff, one exhausted (5 failures, the
-- default max_refresh_attempts), one whose backoff is over.
UPDATE provider_connections SET refresh_failures = 1, next_refresh_at = now() + interval '30 seconds'
 WHERE id = :'soon2';
UPDATE provider_connections SET refresh_failures = 5, next_refresh_at = now() + interval '1 hour'
 WHERE provider_slug = 'never';
UPDATE provider_connections SET refresh_failures = 2, next_refresh_at = now() - interval '1 second'
 WHERE id = :'far';

-- The counts, made independently: every column equal, then the values.
CREATE TEMPORARY TABLE independent AS
SELECT (SELECT count(*) FROM provider_connections WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM provider_connections WHERE status = 'active') AS active,
       (SELECT count(*) FROM provider_connections WHERE status = 'expired') AS expired,
       (SELECT count(*) FROM provider_connections WHERE status = 'revoked') AS revoked,
       (SELECT count(*) FROM provider_connections WHERE status = 'failed') AS failed,
       (SELECT count(*) FROM provider_connections WHERE status = 'disconnected') AS disconnected,
       (SELECT count(*) FROM provider_connections_overview
         WHERE status = 'active' AND is_credentials_expiring_soon) AS expiring_soon,
       (SELECT count(*) FROM provider_connections_overview
         WHERE status = 'active' AND is_credentials_expired) AS overdue,
       (SELECT count(*) FROM provider_connections WHERE lease_until > now()) AS leased,
       (SELECT count(*) FROM provider_connections_overview
         WHERE status = 'active' AND next_refresh_at > now() AND NOT is_refresh_exhausted) AS in_backoff,
       (SELECT count(*) FROM provider_connections_overview
         WHERE status = 'active' AND is_refresh_exhausted) AS refresh_exhausted,
       (SELECT count(*) FROM provider_connections
         WHERE status = 'pending' AND created_at < now() - interval '1 hour') AS pending_abandoned,
       (SELECT count(*) FROM provider_audit_log) AS audit_rows;
SELECT * FROM independent;
SELECT pending, active, expired, revoked, failed, disconnected, expiring_soon, overdue,
       leased, in_backoff, refresh_exhausted, pending_abandoned, audit_rows_estimate
  FROM provider_stats();
SELECT (s.pending, s.active, s.expired, s.revoked, s.failed, s.disconnected, s.expiring_soon,
        s.overdue, s.leased, s.in_backoff, s.refresh_exhausted, s.pending_abandoned, s.audit_rows_estimate)
       = (i.pending, i.active, i.expired, i.revoked, i.failed, i.disconnected, i.expiring_soon,
          i.overdue, i.leased, i.in_backoff, i.refresh_exhausted, i.pending_abandoned, i.audit_rows) AS all_equal
  FROM provider_stats() s, independent i;

-- The windows are arguments: within 3 minutes only soon1; pending for more
-- than 20 minutes, three; for more than 3 hours, none.
SELECT expiring_soon, pending_abandoned FROM provider_stats(expiring_within => '3 minutes', abandoned_after => '20 minutes');
SELECT pending_abandoned FROM provider_stats(abandoned_after => '3 hours');
-- NULL: the overview's window, provider_connections.expiring_soon.
SELECT expiring_soon = (SELECT count(*) FROM provider_connections_overview
                         WHERE is_credentials_expiring_soon) AS window_of_the_overview
  FROM provider_stats(NULL);
SELECT * FROM provider_stats(abandoned_after => NULL);
SELECT * FROM provider_stats('-1 minute');
SELECT * FROM provider_stats(abandoned_after => '-1 minute');

-- The log's size from the planner's statistics once analyzed: exact here
-- (ANALYZE reads every row of a small table).
ANALYZE provider_audit_log;
SELECT reltuples >= 0 AS analyzed FROM pg_class WHERE oid = 'provider_audit_log'::regclass;
SELECT s.audit_rows_estimate = (SELECT count(*) FROM provider_audit_log) AS estimate_exact
  FROM provider_stats() s;

-- The feed: everything numbered by a read of the head, nothing waiting.
SELECT provider_feed_head() AS head \gset
SELECT feed_head = :head AS head_equal, unnumbered_events, oldest_unnumbered_age
  FROM provider_stats();

-- Events committed but not numbered: a prepared transaction holds the
-- feed's state row, so no round (the worker's skips a held row) numbers
-- what the next three calls write (six events); counted without a round.
BEGIN;
SELECT true AS held FROM provider_feed_state FOR UPDATE;
PREPARE TRANSACTION 'pc_stats_hold_feed';
SELECT ok FROM provider_connect(:u, :p, 'late1', '\x01');
SELECT ok FROM provider_connect(:u, :p, 'late2', '\x01');
SELECT ok FROM provider_record_sync('00000000-0000-0000-0000-000000000000');
-- The oldest one's age, between two measures taken before and after.
SELECT clock_timestamp() - min(occurred_at) AS age_before
  FROM provider_audit_log a
 WHERE NOT EXISTS (SELECT 1 FROM provider_event_positions p WHERE p.audit_id = a.id) \gset
SELECT unnumbered_events AS stats_unnumbered, oldest_unnumbered_age AS stats_age,
       feed_head AS stats_head
  FROM provider_stats() \gset
SELECT clock_timestamp() - min(occurred_at) AS age_after
  FROM provider_audit_log a
 WHERE NOT EXISTS (SELECT 1 FROM provider_event_positions p WHERE p.audit_id = a.id) \gset
SELECT :stats_unnumbered AS unnumbered_events,
       :stats_unnumbered = (SELECT count(*) FROM provider_audit_log a
                             WHERE NOT EXISTS (SELECT 1 FROM provider_event_positions p
                                                WHERE p.audit_id = a.id)) AS unnumbered_equal,
       :'stats_age'::interval BETWEEN :'age_before' AND :'age_after' AS age_between,
       :stats_head = :head AS head_unchanged;
-- A caller's own uncommitted events are not counted.
BEGIN;
SELECT ok FROM provider_connect(:u, :p, 'mine', '\x01');
SELECT unnumbered_events FROM provider_stats();
ROLLBACK;
ROLLBACK PREPARED 'pc_stats_hold_feed';
-- Numbered now: nothing waits, the head moved by six.
SELECT provider_feed_head() - :head AS head_moved;
SELECT unnumbered_events, oldest_unnumbered_age, feed_head - :head AS stats_head_moved FROM provider_stats();

-- Granted to nobody but pg_monitor, whose members need no grant on the
-- tables: it runs as the extension owner.
SELECT grantee::regrole AS grantee, privilege_type
  FROM pg_proc p, aclexplode(p.proacl) a
 WHERE p.oid = 'provider_stats(interval, interval)'::regprocedure AND a.grantee <> p.proowner;
CREATE ROLE pc_stats_nobody;
CREATE ROLE pc_stats_monitor IN ROLE pg_monitor;
SET ROLE pc_stats_nobody;
SELECT pending FROM provider_stats();
SET ROLE pc_stats_monitor;
SELECT pending, active FROM provider_stats();
RESET ROLE;
DROP ROLE pc_stats_nobody;
DROP ROLE pc_stats_monitor;
