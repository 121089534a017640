-- 1.4: the forms that take the owner first (routed by user on Citus), the
-- nil UUID that stands for "no user" in the audit log, the guard's reading
-- of last_call_id, the audit ids and xids a call writes, and
-- provider_distribute without Citus.
-- A fresh install of its own, so that this file runs in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
\set VERBOSITY terse
\set u '''31313131-3131-3131-3131-313131313131'''
\set other '''32323232-3232-3232-3232-323232323232'''
\set nil '''00000000-0000-0000-0000-000000000000'''
\set p '''aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa'''

SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
CREATE FUNCTION events_after(after bigint)
    RETURNS TABLE (event_type text, user_id uuid, reason text)
LANGUAGE sql AS $$
    SELECT event_type, user_id, reason FROM provider_audit_log WHERE id > after ORDER BY id
$$;

-- Each user-first form acts on the user's own connection.
SELECT connection_id AS c FROM provider_connect(:u, :p, 'schwab', '\x6f6c64', 'oauth2', now() + interval '1 day') \gset
SELECT ok, error_code FROM provider_refresh_tokens(:u, :'c', '\x6e6577', now() + interval '2 days', NULL, NULL);
SELECT provider_credentials(:u, :'c') AS mine, provider_credentials(:other, :'c') AS others,
       provider_credentials(NULL, :'c') AS no_user;
SELECT ok, error_code FROM provider_record_sync(:u, :'c');
SELECT last_sync_at IS NOT NULL AS synced FROM provider_connections WHERE id = :'c';
SELECT ok, error_code FROM provider_record_refresh_failure(:u, :'c', NULL, 'provider down', NULL);
SELECT refresh_failures FROM provider_connections WHERE id = :'c';
SELECT ok, error_code FROM provider_mark_expired(:u, :'c', NULL);
SELECT ok, error_code FROM provider_mark_revoked(:u, :'c', 'reauth', NULL);
SELECT status FROM provider_connections WHERE id = :'c';

-- Another user's connection is not found by the user-first forms (the
-- connection's shard is another's on Citus); nothing changes.
SELECT connection_id AS d FROM provider_connect(:u, :p, 'schwab', '\x6f6c64', 'oauth2', now() + interval '1 hour') \gset
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, error_code FROM provider_refresh_tokens(:other, :'d', '\x78', NULL, NULL, NULL);
SELECT ok, error_code FROM provider_mark_revoked(:other, :'d', 'no', NULL);
SELECT ok, error_code FROM provider_record_sync(:other, :'d');
SELECT ok, error_code FROM provider_record_refresh_failure(:other, :'d', NULL, 'x', NULL);
SELECT status, refresh_failures, last_sync_at IS NULL AS never_synced FROM provider_connections WHERE id = :'d';
SELECT * FROM events_after(:mark);

-- A NULL user in a user-first form is refused with its events.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, error_code, error FROM provider_mark_failed(NULL, :'d', 'x');
SELECT ok, error_code, error FROM provider_record_sync(NULL, :'d');
SELECT * FROM events_after(:mark);

-- The id-only forms still find the owner themselves.
SELECT ok FROM provider_refresh_tokens(:'d', '\x6e6577', now() + interval '1 hour');
SELECT ok FROM provider_record_sync(:'d');
SELECT provider_credentials(:'d') AS by_id;

-- Renew and release, both forms, fenced by the token.
SELECT lease_token AS t FROM provider_claim_expiring(interval '10 years', 10, interval '1 minute')
 WHERE connection_id = :'d' \gset
SELECT provider_renew_lease(:u, :'d', :'t', interval '2 minutes') IS NOT NULL AS renewed_by_user,
       provider_renew_lease(:other, :'d', :'t', interval '2 minutes') IS NULL AS not_by_other,
       provider_renew_lease(:'d', :'t', interval '2 minutes') IS NOT NULL AS renewed_by_id;
SELECT provider_release_lease(:other, :'d', :'t') AS released_by_other,
       provider_release_lease(:u, :'d', :'t') AS released_by_user,
       provider_release_lease(:'d', :'t') AS released_again;
SELECT provider_release_lease('99999999-9999-9999-9999-999999999999', :'t') AS unknown_connection;

-- No user: the audit log stores the nil UUID (its user_id is part of its
-- key); the feed and the payloads say NULL. The nil UUID is no user.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, error FROM provider_connect(NULL, :p, 'schwab', '\x01');
SELECT ok, error FROM provider_connect(:nil, :p, 'schwab', '\x01');
SELECT ok, error FROM provider_begin_connect(:nil, :p, 'schwab');
SELECT ok, error FROM provider_disconnect(:nil, :'d');
SELECT * FROM events_after(:mark);
SELECT event_type, user_id IS NULL AS user_is_null
  FROM provider_events_since(0, 1000)
 WHERE audit_id > :mark ORDER BY global_position;
SELECT count(*) FILTER (WHERE p.user_id = a.user_id) AS positions_with_their_user, count(*) AS positions
  FROM provider_event_positions p JOIN provider_audit_log a ON a.id = p.audit_id;

-- The guard: a status change by one of our functions names its call in
-- last_call_id (no second event); a direct UPDATE leaves it alone and is
-- recorded; on one node a direct UPDATE that sets last_call_id is recorded
-- too (the column is read on a distributed install only, where the guard
-- cannot see the function writing).
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok FROM provider_disconnect(:u, :'d');
SELECT last_call_id = (SELECT call_id FROM provider_audit_log WHERE id > :mark ORDER BY id LIMIT 1) AS names_its_call
  FROM provider_connections WHERE id = :'d';
SELECT connection_id AS e FROM provider_connect(:u, :p, 'schwab', '\x01') \gset
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
UPDATE provider_connections SET status = 'expired' WHERE id = :'e';
SELECT * FROM events_after(:mark);
SELECT last_call_id IS NULL AS direct_leaves_it FROM provider_connections WHERE id = :'e';
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
UPDATE provider_connections SET status = 'disconnected', encrypted_credentials = NULL,
       last_call_id = gen_random_uuid() WHERE id = :'e';
SELECT count(*) AS recorded FROM provider_audit_log WHERE id > :mark;

-- Without Citus: every row's xid is the writer's own; no group offset.
SELECT count(*) FILTER (WHERE id >= (1::bigint << 48)) AS offset_ids FROM provider_audit_log;
SELECT provider_distributed();
SELECT provider_distribute();
SELECT tgenabled FROM pg_trigger WHERE tgname = 'provider_audit_log_stamp';
-- The feed of a distributed install is per shard; on one node these refuse.
SELECT * FROM provider_feed_shards();
SELECT * FROM provider_shard_events_since(1, 0);
SELECT count(*) AS shard_state_rows FROM provider_feed_shard_state;
