-- The read side (1.3): the overview view, refresh claims and their leases,
-- and retention of the append-only log (specs/claim.spec shows concurrent
-- claims never overlap).
-- A fresh install of its own, so that this file runs in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
\set VERBOSITY terse
-- The key: the server's own (provider_connections.encryption_key_file in
-- postgresql.conf; the key settings cannot be set per session).
\set u '''31313131-3131-3131-3131-313131313131'''
\set p '''aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa'''

-- Connections in every situation the overview tells apart.
SELECT connection_id AS soon FROM provider_connect(:u, :p, 'soon', '\x01', 'oauth2', now() + interval '2 minutes') \gset
SELECT connection_id AS later FROM provider_connect(:u, :p, 'later', '\x01', 'link_token', now() + interval '4 minutes') \gset
SELECT connection_id AS key FROM provider_connect(:u, :p, 'key', '\x01', 'api_key', now() + interval '1 minute') \gset
SELECT connection_id AS far FROM provider_connect(:u, :p, 'far', '\x01', 'oauth2', now() + interval '1 day') \gset
SELECT connection_id AS never FROM provider_connect(:u, :p, 'never', '\x01', 'oauth2') \gset
SELECT connection_id AS gone FROM provider_connect(:u, :p, 'gone', '\x01', 'oauth2', now() + interval '1 hour') \gset
SELECT ok FROM provider_mark_expired(:'gone');
SELECT ok FROM provider_begin_connect(:u, :p, 'waiting');
UPDATE provider_connections SET credentials_expires_at = now() - interval '1 second' WHERE id = :'gone';

SELECT provider_slug, status, is_connected, needs_reauthentication, is_credentials_expired,
       is_credentials_expiring_soon, can_sync, supports_refresh
  FROM provider_connections_overview ORDER BY provider_slug;
-- Every column of the table but the sealed credentials.
SELECT a.attname AS only_in_table FROM pg_attribute a
 WHERE a.attrelid = 'provider_connections'::regclass AND a.attnum > 0 AND NOT a.attisdropped
   AND a.attname NOT IN (SELECT attname FROM pg_attribute WHERE attrelid = 'provider_connections_overview'::regclass);

-- Claims: refreshable, active, expiring within the window, soonest first;
-- claimed ones are leased and not handed out again while the lease runs.
SELECT provider_slug, credential_type FROM provider_claim_expiring('5 minutes', 10, '1 minute');
SELECT count(*) AS claimed_again FROM provider_claim_expiring('5 minutes', 10, '1 minute');
SELECT provider_slug, lease_until > now() AS leased FROM provider_connections WHERE lease_until IS NOT NULL ORDER BY 1;
-- max_rows bounds a claim; an expired lease can be claimed again.
UPDATE provider_connections SET lease_until = now() - interval '1 second' WHERE id IN (:'soon', :'later');
SELECT provider_slug FROM provider_claim_expiring('5 minutes', 1, '1 minute');
-- A successful refresh ends the lease (and here moves the expiry out of the window).
SELECT ok FROM provider_refresh_tokens(:'soon', '\x02', now() + interval '1 hour');
SELECT lease_until IS NULL AS lease_ended FROM provider_connections WHERE id = :'soon';
-- A refresh that fails leaves the lease to run out.
UPDATE provider_connections SET lease_until = now() - interval '1 second' WHERE id = :'later';
SELECT provider_slug FROM provider_claim_expiring('5 minutes', 10, '1 minute');
SELECT ok, error_code FROM provider_refresh_tokens(:'later', NULL);
SELECT lease_until > now() AS still_leased FROM provider_connections WHERE id = :'later';
-- Bad arguments are errors.
SELECT * FROM provider_claim_expiring(NULL);
SELECT * FROM provider_claim_expiring('5 minutes', 0);
SELECT * FROM provider_claim_expiring('5 minutes', 10, '0');

-- Retention: only rows older than `before` AND at or below the position go,
-- with their positions; rows not numbered yet stay; the purge records itself.
SELECT count(*) AS numbered FROM provider_events_since(0, 1000);
SELECT max(global_position) AS head, count(*) AS events FROM provider_event_positions \gset
SELECT provider_purge_events(now() + interval '1 second', 4) AS purged;
SELECT min(global_position) AS first_left, count(*) FILTER (WHERE global_position <= :head) AS left
  FROM provider_event_positions;
-- Events of a transaction still open cannot be numbered yet, so even a
-- purge of everything numbered keeps them.
BEGIN;
SELECT ok FROM provider_connect(:u, :p, 'after', '\x01');
SELECT provider_purge_events(now() + interval '1 second', :head) AS purged_all_numbered;
SELECT count(*) AS left_of_the_open_call FROM provider_audit_log WHERE provider_slug = 'after';
ROLLBACK;
SELECT provider_purge_events('-infinity', :head) AS purged_nothing_older;
SELECT event_type, context->>'audit_rows' AS audit_rows, context->>'up_to_position' AS up_to
  FROM provider_audit_log WHERE event_type = 'ProviderEventsPurged' ORDER BY id;
-- A consumer behind the purge horizon (the highest position purged: 4) is
-- told so, with SQLSTATE 72000, the horizon in the message and the detail,
-- whatever max_events it asks for; with skip_purged it reads on after the
-- horizon. At the horizon or past it nothing changes.
\set VERBOSITY default
SELECT count(*) FROM provider_events_since(0, 1000);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) FROM provider_events_since(3, 0);
\set VERBOSITY terse
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) AS kept FROM provider_event_positions \gset
SELECT min(global_position) AS resumes_at, count(*) = :kept AS all_kept
  FROM provider_events_since(0, 1000, skip_purged => true);
SELECT min(global_position) AS at_the_horizon FROM provider_events_since(4, 1000);
SELECT min(global_position) AS past_it_with_skip FROM provider_events_since(6, 1000, true);
SELECT purged_up_to FROM provider_feed_horizon;
-- A purge of every event does not set the head back: the horizon, at the
-- last event purged, is its floor. Read in the purge's transaction (where
-- the purge's own event cannot be numbered yet), the head is where it was;
-- read after it, it includes the purge's event.
SELECT provider_feed_head() AS head_before_purging_all \gset
BEGIN;
SELECT provider_purge_events(now() + interval '1 day', 9223372036854775807) > 0 AS purged_all;
SELECT count(*) AS positions_left,
       (SELECT purged_up_to FROM provider_feed_horizon) = :head_before_purging_all AS horizon_at_head
  FROM provider_event_positions;
SELECT provider_feed_head() - :head_before_purging_all AS head_moved_in_the_purge;
COMMIT;
SELECT provider_feed_head() - :head_before_purging_all AS head_moved_by_the_purge_event;
SELECT event_type FROM provider_events_since(:head_before_purging_all, 1000);
SELECT count(*) FROM provider_events_since(:head_before_purging_all - 1, 1000);
-- A purge removes a prefix of the feed: an event written long ago but
-- numbered after younger ones (here: stamped in 2000 by the test clock,
-- committed last) is not removed ahead of them, so the horizon never
-- passes events that are still there.
SELECT provider_feed_head() AS head_before_old_event \gset
SELECT ok FROM provider_connect('60606060-6060-6060-6060-606060606060', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'young', '\x01');
SET provider_connections.test_clock = '2000-01-01 00:00:00+00';
SELECT ok FROM provider_connect('60606060-6060-6060-6060-606060606060', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'old', '\x01');
RESET provider_connections.test_clock;
SELECT provider_feed_head() - :head_before_old_event AS numbered;
SELECT provider_purge_events('2001-01-01', 9223372036854775807) AS purged_ahead_of_younger;
SELECT purged_up_to = :head_before_purging_all AS horizon_unchanged FROM provider_feed_horizon;
SELECT count(*) AS still_readable FROM provider_events_since(:head_before_purging_all, 1000);
-- Everywhere else the log stays append-only.
DELETE FROM provider_audit_log;
DELETE FROM provider_event_positions;
SELECT provider_purge_events(NULL, 1);
SELECT provider_purge_events(now(), -1);
