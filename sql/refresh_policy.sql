-- The refresh policy (1.4): leases on the clock with a bound, fencing tokens,
-- renew and release, failed refreshes counted with backoff and exhaustion,
-- abandoned OAuth flows, and the overview's flags. (specs/lease.spec shows
-- the same between concurrent workers, t/015_refresh_workers.pl with real
-- worker processes.)
-- A fresh install of its own, so that this file runs in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
\set VERBOSITY terse
SET timezone = 'UTC';
-- The audit log without what differs from run to run.
CREATE VIEW events AS
SELECT id, event_type, connection_id, reason, needs_user_action,
       context - '{current_user,session_user,application_name,backend_pid,transaction_id,notify}'::text[] AS details
  FROM provider_audit_log;

-- Three connections expiring soon (the claim and the backoff run on the
-- clock, which test_clock does not pin, so these are relative to it).
SELECT count(*) FILTER (WHERE (provider_connect('16161616-1616-1616-1616-161616161616', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
        's' || n, '\x01', 'oauth2', clock_timestamp() + n * interval '1 minute')).ok) AS connected
  FROM generate_series(1, 3) n;
SELECT id AS c1 FROM provider_connections WHERE provider_slug = 's1' \gset
SELECT id AS c2 FROM provider_connections WHERE provider_slug = 's2' \gset
SELECT id AS c3 FROM provider_connections WHERE provider_slug = 's3' \gset

-- The settings in force (the defaults).
SELECT * FROM provider_refresh_settings();

-- 1. Leases on the clock. A claim late in an old transaction leases from
-- the time of the claim, not the transaction's start.
BEGIN;
SELECT pg_sleep(0.2);
SELECT lease_until - now() > interval '1 minute' AS from_the_claim_not_the_transaction,
       refresh_attempts, lease_token IS NOT NULL AS has_token
  FROM provider_claim_expiring('5 minutes', 1, '1 minute');
COMMIT;
-- A longer lease than provider_connections.max_lease (10 minutes) is refused.
SELECT * FROM provider_claim_expiring('5 minutes', 1, '11 minutes');
SELECT * FROM provider_claim_expiring('100 years', 2147483647, '100000 years');
-- max_lease is a superuser's setting, per session.
SET provider_connections.max_lease = '20min';
SELECT count(*) AS claimed FROM provider_claim_expiring('5 minutes', 1, '11 minutes');
RESET provider_connections.max_lease;
UPDATE provider_connections SET lease_until = NULL;

-- 2. Fencing tokens. Claim all three; each gets its own token.
CREATE TEMP TABLE claimed AS SELECT * FROM provider_claim_expiring('5 minutes', 10, '1 minute');
SELECT count(*) AS claims, count(DISTINCT lease_token) AS tokens FROM claimed;
SELECT lease_token AS t1 FROM claimed WHERE connection_id = :'c1' \gset
SELECT lease_token AS t2 FROM claimed WHERE connection_id = :'c2' \gset
SELECT lease_token AS t3 FROM claimed WHERE connection_id = :'c3' \gset
-- A token that is not the connection's (another's): lease_lost, audited,
-- nothing changed.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, error_code, error FROM provider_refresh_tokens(:'c1', '\x02', clock_timestamp() + interval '1 hour', lease_token => :'t2');
SELECT event_type, reason, needs_user_action FROM events WHERE id > :mark ORDER BY id;
SELECT provider_credentials(:'c1') AS unchanged, lease_until IS NOT NULL AS still_leased
  FROM provider_connections WHERE id = :'c1';
-- The right token: refreshed, the lease ended; the same token again is stale.
SELECT ok FROM provider_refresh_tokens(:'c1', '\x02', clock_timestamp() + interval '1 hour', lease_token => :'t1');
SELECT ok, error_code FROM provider_refresh_tokens(:'c1', '\x03', clock_timestamp() + interval '1 hour', lease_token => :'t1');
SELECT provider_credentials(:'c1') AS refreshed_once, lease_until FROM provider_connections WHERE id = :'c1';
-- Renew: a lease in force moves to now plus the lease; a stale token gets NULL.
SELECT provider_renew_lease(:'c2', :'t2', '5 minutes') - clock_timestamp()
           BETWEEN interval '4 minutes' AND interval '5 minutes' AS renewed,
       provider_renew_lease(:'c2', :'t1', '5 minutes') AS stale,
       provider_renew_lease(:'c1', :'t1', '5 minutes') AS ended;
SELECT provider_renew_lease(:'c2', :'t2', '11 minutes');
SELECT provider_renew_lease(:'c2', :'t2', '0');
-- A lease that ran out but was not claimed again is still the token's.
UPDATE provider_connections SET lease_until = clock_timestamp() - interval '1 second' WHERE id = :'c2';
SELECT provider_renew_lease(:'c2', :'t2', '1 minute') IS NOT NULL AS renewed_after_running_out;
-- Release: claimable at once; the released token is stale for every call.
SELECT provider_release_lease(:'c2', :'t2') AS released, provider_release_lease(:'c2', :'t2') AS again;
SELECT ok, error_code FROM provider_mark_revoked(:'c2', 'invalid_grant', lease_token => :'t2');
SELECT ok, error_code FROM provider_mark_expired(:'c2', :'t2');
SELECT ok, error_code FROM provider_record_refresh_failure(:'c2', :'t2', 'timeout');
SELECT status, refresh_failures FROM provider_connections WHERE id = :'c2';
SELECT lease_token AS t2 FROM provider_claim_expiring('5 minutes', 1, '1 minute') \gset
-- The marks with their token.
SELECT ok FROM provider_mark_revoked(:'c2', 'invalid_grant', lease_token => :'t2');
SELECT ok FROM provider_mark_expired(:'c3', :'t3');
SELECT provider_slug, status, lease_until FROM provider_connections ORDER BY provider_slug;
-- Without a token, no fence (callers that do not claim).
SELECT ok FROM provider_refresh_tokens(:'c1', '\x04', clock_timestamp() + interval '2 minutes');

-- 3. Failed attempts with backoff: 30 s, doubling, then exhausted at the
-- fifth; each a ProviderTokenRefreshFailed with the attempt number.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT lease_token AS t1 FROM provider_claim_expiring('5 minutes', 1, '1 minute') \gset
SELECT ok, error_code FROM provider_record_refresh_failure(:'c1', :'t1', 'provider timeout');
SELECT refresh_failures, lease_until, next_refresh_at - clock_timestamp() BETWEEN interval '25 seconds' AND interval '30 seconds' AS backoff_30s
  FROM provider_connections WHERE id = :'c1';
SELECT event_type, reason, needs_user_action, details - 'next_attempt_at' AS details, details->>'next_attempt_at' IS NOT NULL AS has_next
  FROM events WHERE id > :mark ORDER BY id;
-- In backoff: not claimed.
SELECT count(*) AS claimed_in_backoff FROM provider_claim_expiring('5 minutes', 10, '1 minute');
-- Attempts 2 to 4 (the backoff waited out by hand each time): 60 s, 120 s, 240 s.
CREATE TEMP TABLE waits (attempt int, wait interval);
DO $$
DECLARE
    tok uuid;
    n int;
BEGIN
    FOR n IN 2..4 LOOP
        UPDATE provider_connections SET next_refresh_at = clock_timestamp() WHERE provider_slug = 's1';
        SELECT lease_token INTO tok FROM provider_claim_expiring('5 minutes', 1, '1 minute');
        PERFORM provider_record_refresh_failure(c.id, tok, 'provider timeout') FROM provider_connections c WHERE provider_slug = 's1';
        INSERT INTO waits SELECT refresh_failures, date_trunc('second', next_refresh_at - clock_timestamp() + interval '0.9 second')
          FROM provider_connections WHERE provider_slug = 's1';
    END LOOP;
END $$;
SELECT * FROM waits ORDER BY attempt;
-- The fifth: exhausted; the event asks for the user; still active, never claimed.
UPDATE provider_connections SET next_refresh_at = clock_timestamp() WHERE id = :'c1';
SELECT lease_token AS t1 FROM provider_claim_expiring('5 minutes', 1, '1 minute') \gset
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok FROM provider_record_refresh_failure(:'c1', :'t1', 'provider timeout');
SELECT event_type, needs_user_action, details FROM events WHERE id > :mark ORDER BY id;
SELECT status, refresh_failures, is_refresh_exhausted FROM provider_connections_overview WHERE id = :'c1';
UPDATE provider_connections SET next_refresh_at = NULL WHERE id = :'c1';
SELECT count(*) AS claimed_exhausted FROM provider_claim_expiring('5 minutes', 10, '1 minute');
-- A successful refresh resets the count: claimable again.
SELECT ok FROM provider_refresh_tokens(:'c1', '\x05', clock_timestamp() + interval '2 minutes');
SELECT refresh_failures, next_refresh_at, is_refresh_exhausted FROM provider_connections_overview WHERE id = :'c1';
SELECT lease_token AS t1, refresh_attempts FROM provider_claim_expiring('5 minutes', 1, '1 minute') \gset
SELECT :refresh_attempts AS attempts_after_refresh;
-- retry_after from the provider replaces the backoff; a negative one is refused.
SELECT ok FROM provider_record_refresh_failure(:'c1', :'t1', 'rate limited', '10 minutes');
SELECT next_refresh_at - clock_timestamp() BETWEEN interval '9 minutes' AND interval '10 minutes' AS retry_after_10min
  FROM provider_connections WHERE id = :'c1';
-- A retry_after beyond refresh_backoff_max (1 hour) is capped there: the
-- connection is not parked for a century, neither claimed nor exhausted.
SELECT ok FROM provider_record_refresh_failure(:'c1', NULL, 'rate limited', '100 years');
SELECT next_refresh_at - clock_timestamp() BETWEEN interval '59 minutes' AND interval '1 hour' AS retry_after_capped
  FROM provider_connections WHERE id = :'c1';
SELECT ok, error_code, error FROM provider_record_refresh_failure(:'c1', NULL, 'x', '-1 second');
SELECT ok, error_code, error FROM provider_record_refresh_failure(:'c1', NULL, NULL);
SELECT ok, error_code, error FROM provider_record_refresh_failure(NULL, NULL, 'x');
SELECT ok, error_code FROM provider_record_refresh_failure('99999999-9999-9999-9999-999999999999', NULL, 'x');
-- Not active (c2 is revoked): not_active, the user must act.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, error_code FROM provider_record_refresh_failure(:'c2', NULL, 'x');
SELECT event_type, reason, needs_user_action FROM events WHERE id > :mark ORDER BY id;
-- The cap (refresh_backoff_max, cluster-wide): 30 s, then 45 s, not 60 s.
ALTER SYSTEM SET provider_connections.refresh_backoff_max = '45s';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SHOW provider_connections.refresh_backoff_max;
SELECT ok FROM provider_record_refresh_failure(:'c1', NULL, 'x');
SELECT refresh_failures, next_refresh_at - clock_timestamp() BETWEEN interval '40 seconds' AND interval '45 seconds' AS capped_45s
  FROM provider_connections WHERE id = :'c1';
ALTER SYSTEM RESET provider_connections.refresh_backoff_max;
-- Re-authentication resets the count too.
SELECT ok FROM provider_mark_expired(:'c1');
SELECT ok FROM provider_connect('16161616-1616-1616-1616-161616161616', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
                                's1', '\x06', 'oauth2', clock_timestamp() + interval '1 hour', connection_id => :'c1');
SELECT status, refresh_failures, next_refresh_at FROM provider_connections WHERE id = :'c1';

-- 4. Abandoned flows: pending connections created before now minus
-- older_than become failed with reason abandoned, each with its events.
SET provider_connections.test_clock = '2026-01-07 00:00:00+00';
SELECT count(*) FROM (SELECT provider_begin_connect('17171717-1717-1717-1717-171717171717',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'old' || n) FROM generate_series(1, 3) n) b;
SET provider_connections.test_clock = '2026-01-07 01:30:00+00';
SELECT ok FROM provider_begin_connect('17171717-1717-1717-1717-171717171717', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'fresh');
SELECT count(*) AS abandoned_by_hand FROM provider_connections
 WHERE status = 'pending' AND created_at < '2026-01-07 01:30:00+00'::timestamptz - interval '1 hour';
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT provider_fail_abandoned() AS failed;
SELECT provider_slug, status FROM provider_connections WHERE provider_slug LIKE 'old%' OR provider_slug = 'fresh' ORDER BY 1;
SELECT event_type, reason, details FROM events WHERE id > :mark ORDER BY id LIMIT 2;
SELECT count(*) AS events FROM events WHERE id > :mark;
SET provider_connections.test_clock = '2026-01-07 01:30:01+00';
SELECT provider_fail_abandoned('0') AS the_fresh_one, provider_fail_abandoned('0') AS none_left;
SELECT provider_fail_abandoned('-1 second');
SELECT provider_fail_abandoned(NULL);
RESET provider_connections.test_clock;

-- 5. Expiring soon: only active connections, within expiring_soon.
SELECT count(*) FILTER (WHERE (provider_connect('18181818-1818-1818-1818-181818181818', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
        'soon' || n, '\x01', 'oauth2', now() + m * interval '1 minute')).ok) AS connected
  FROM unnest('{1,2,6,10}'::int[]) WITH ORDINALITY u(m, n);
UPDATE provider_connections SET status = 'expired' WHERE provider_slug = 'soon2';
SELECT count(*) AS active_within_5min_by_hand FROM provider_connections
 WHERE provider_slug LIKE 'soon%' AND status = 'active'
   AND credentials_expires_at > now() AND credentials_expires_at <= now() + interval '5 minutes';
SELECT provider_slug, status, is_credentials_expiring_soon FROM provider_connections_overview
 WHERE provider_slug LIKE 'soon%' ORDER BY 1;
ALTER SYSTEM SET provider_connections.expiring_soon = '8min';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SHOW provider_connections.expiring_soon;
SELECT provider_slug, is_credentials_expiring_soon FROM provider_connections_overview
 WHERE provider_slug LIKE 'soon%' ORDER BY 1;
-- The cluster-wide settings cannot be set per session.
SET provider_connections.expiring_soon = '1min';
SET provider_connections.max_refresh_attempts = 100;
ALTER SYSTEM RESET provider_connections.expiring_soon;
SELECT pg_reload_conf();
