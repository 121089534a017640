-- The whole lifecycle (1.3): begin, complete, re-authenticate, mark failed,
-- expired, revoked, record syncs, expire overdue connections; the events
-- each writes (one call_id per call), the refusals (naming both states),
-- and the guard's record of direct status changes and its seal check.
-- A fresh install of its own, so that this file runs in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
\set VERBOSITY terse
-- The key: the server's own (provider_connections.encryption_key_file in
-- postgresql.conf; the key settings cannot be set per session).
\set u '''21212121-2121-2121-2121-212121212121'''
\set other '''22222222-2222-2222-2222-222222222222'''
\set p '''aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa'''

-- The events after an audit id, each with its call (1, 2, ... in the order
-- calls began; rows of one call share its call_id).
CREATE FUNCTION call_events(after bigint) RETURNS TABLE (call bigint, event_type text, action text, reason text)
LANGUAGE sql AS $$
    SELECT dense_rank() OVER (ORDER BY first_id), event_type, action, reason
      FROM (SELECT *, min(id) OVER (PARTITION BY call_id) AS first_id
              FROM provider_audit_log WHERE id > after) a
     ORDER BY id
$$;
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset

-- Begin: a pending row, no credentials, not yet connected.
SELECT connection_id AS pending FROM provider_begin_connect(:u, :p, 'schwab', 'brokerage') \gset
SELECT status, alias, credential_type, encrypted_credentials IS NULL AS no_credentials, connected_at IS NULL AS never_connected
  FROM provider_connections WHERE id = :'pending';
-- Its validation is connect's.
SELECT pos, (r).ok, (r).error_code, (r).error FROM (
    SELECT 1 AS pos, provider_begin_connect(NULL, :p, 'schwab') AS r
    UNION ALL SELECT 2, provider_begin_connect(:u, NULL, 'schwab')
    UNION ALL SELECT 3, provider_begin_connect(:u, :p, '')
    UNION ALL SELECT 4, provider_begin_connect(:u, :p, 'schwab', repeat('a', 101))
    UNION ALL SELECT 5, provider_begin_connect(:u, :p, 'schwab', NULL, 'password')) s ORDER BY pos;
SELECT * FROM call_events(:mark);
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset

-- Completing it: the same row becomes active, connected_at set; no recovery event.
SELECT ok FROM provider_connect(:u, :p, 'schwab', '\x746f6b656e2d31', 'oauth2', now() + interval '1 hour',
                                NULL, :'pending');
SELECT status, alias, connected_at IS NOT NULL AS connected, provider_credentials(id) = '\x746f6b656e2d31' AS opens
  FROM provider_connections WHERE id = :'pending';
SELECT connected_at AS first_connected FROM provider_connections WHERE id = :'pending' \gset
SELECT * FROM call_events(:mark);
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset

-- What connect with an id refuses.
SELECT pos, (r).ok, (r).error_code, (r).error FROM (
    SELECT 1 AS pos, provider_connect(:u, :p, 'schwab', '\x01', connection_id => :'pending') AS r
    UNION ALL SELECT 2, provider_connect(:other, :p, 'schwab', '\x01', connection_id => :'pending')
    UNION ALL SELECT 3, provider_connect(:u, 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', 'chase', '\x01', connection_id => :'pending')
    UNION ALL SELECT 4, provider_connect(:u, :p, 'schwab', '\x01', connection_id => '00000000-0000-0000-0000-000000000000')
    UNION ALL SELECT 5, provider_connect(:u, :p, 'schwab', '\x01', 'oauth2', now() - interval '1 second')
    UNION ALL SELECT 6, provider_connect(:u, :p, 'schwab', NULL, connection_id => :'pending')
    UNION ALL SELECT 7, provider_connect(:u, :p, 'fidelity', '\x01', connection_id => :'pending')) s ORDER BY pos;
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset

-- Expired keeps the credentials (a refresh token may still be in them);
-- re-authenticating makes the same row active, keeps connected_at, and
-- says it recovered, after the Succeeded row.
SELECT ok FROM provider_mark_expired(:'pending');
SELECT status, provider_credentials(id) = '\x746f6b656e2d31' AS still_opens FROM provider_connections WHERE id = :'pending';
SELECT ok FROM provider_connect(:u, :p, 'schwab', '\x746f6b656e2d32', 'oauth2', now() + interval '1 hour',
                                NULL, :'pending');
SELECT status, connected_at = :'first_connected' AS connected_at_kept, alias
  FROM provider_connections WHERE id = :'pending';
SELECT * FROM call_events(:mark);
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset

-- Revoked clears the credentials and their expiry; it recovers the same way.
SELECT ok FROM provider_mark_revoked(:'pending', 'access withdrawn at the bank');
SELECT status, encrypted_credentials IS NULL AS cleared, credentials_expires_at IS NULL AS expiry_cleared,
       credential_type FROM provider_connections WHERE id = :'pending';
SELECT event_type, context->>'reason' AS reason FROM provider_audit_log WHERE id > :mark ORDER BY id;
SELECT ok FROM provider_connect(:u, :p, 'schwab', '\x33', 'api_key', NULL, NULL, :'pending');
SELECT event_type FROM provider_audit_log WHERE id > :mark ORDER BY id DESC LIMIT 1;

-- Refused moves name both states; failed is for pending connections only.
SELECT pos, (r).ok, (r).error_code, (r).error FROM (
    SELECT 1 AS pos, provider_mark_failed(:'pending') AS r
    UNION ALL SELECT 2, provider_mark_expired('00000000-0000-0000-0000-000000000000')
    UNION ALL SELECT 3, provider_mark_revoked(NULL)) s ORDER BY pos;
SELECT connection_id AS doomed FROM provider_begin_connect(:u, :p, 'fidelity') \gset
SELECT ok FROM provider_mark_failed(:'doomed', 'user closed the consent page');
SELECT pos, (r).ok, (r).error_code, (r).error FROM (
    SELECT 1 AS pos, provider_mark_expired(:'doomed') AS r
    UNION ALL SELECT 2, provider_mark_failed(:'doomed')
    UNION ALL SELECT 3, provider_record_sync(:'doomed')) s ORDER BY pos;
SELECT ok FROM provider_disconnect(:u, :'doomed');
SELECT (r).ok, (r).error_code, (r).error
  FROM provider_connect(:u, :p, 'fidelity', '\x01', connection_id => :'doomed') r;
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset

-- A sync: last_sync_at, and no audit rows; a failed one is audited.
SELECT ok FROM provider_record_sync(:'pending');
SELECT last_sync_at IS NOT NULL AS synced FROM provider_connections WHERE id = :'pending';
SELECT count(*) AS rows_for_a_sync FROM provider_audit_log WHERE id > :mark;
SELECT ok, error_code FROM provider_record_sync('00000000-0000-0000-0000-000000000000');
SELECT * FROM call_events(:mark);
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset

-- A direct status change is recorded, with both statuses and the role; a
-- direct change of anything else is not, and changes through our functions
-- are not recorded twice.
UPDATE provider_connections SET status = 'expired' WHERE id = :'pending';
UPDATE provider_connections SET alias = 'renamed' WHERE id = :'pending';
SELECT event_type, action, connection_id = :'pending' AS this_connection,
       context->>'old_status' AS old_status, context->>'new_status' AS new_status, context->>'role' AS role,
       call_id IS NOT NULL AS has_call_id
  FROM provider_audit_log WHERE id > :mark ORDER BY id;
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok FROM provider_connect(:u, :p, 'schwab', '\x34', connection_id => :'pending');
SELECT count(*) FILTER (WHERE event_type = 'ProviderConnectionStatusChanged') AS recorded_twice
  FROM provider_audit_log WHERE id > :mark;

-- session_replication_role = replica hides nothing on a database that
-- subscribes to nothing: the change is recorded all the same.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SET session_replication_role = replica;
UPDATE provider_connections SET status = 'expired' WHERE id = :'pending';
RESET session_replication_role;
SELECT event_type, context->>'old_status' AS old_status, context->>'new_status' AS new_status
  FROM provider_audit_log WHERE id > :mark ORDER BY id;
SELECT ok FROM provider_connect(:u, :p, 'schwab', '\x34', connection_id => :'pending');

-- A direct DELETE is recorded, one event per connection, with the status
-- it had and the role; rolled back, it leaves nothing. TRUNCATE, which
-- could record nothing, is refused.
SELECT connection_id AS doomed FROM provider_connect(:u, :p, 'doomed', '\x01') \gset
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
BEGIN;
DELETE FROM provider_connections WHERE id = :'doomed';
ROLLBACK;
SELECT count(*) AS events_after_rollback FROM provider_audit_log WHERE id > :mark;
DELETE FROM provider_connections WHERE id = :'doomed';
SELECT event_type, action, connection_id = :'doomed' AS this_connection, provider_slug,
       context->>'old_status' AS old_status, context->>'role' AS role,
       call_id IS NOT NULL AS has_call_id
  FROM provider_audit_log WHERE id > :mark ORDER BY id;
TRUNCATE provider_connections;
SELECT count(*) > 0 AS connections_kept FROM provider_connections;
-- A DELETE that a trigger of the owner's cancels leaves no event.
SELECT connection_id AS kept FROM provider_connect(:u, :p, 'kept', '\x01') \gset
CREATE FUNCTION keep_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER zz_keep_row BEFORE DELETE ON provider_connections
    FOR EACH ROW EXECUTE FUNCTION keep_row();
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
DELETE FROM provider_connections WHERE id = :'kept';
SELECT count(*) AS still_there FROM provider_connections WHERE id = :'kept';
SELECT count(*) AS events_for_a_kept_row FROM provider_audit_log WHERE id > :mark;
DROP TRIGGER zz_keep_row ON provider_connections;
DROP FUNCTION keep_row();

-- The guard refuses bytes without our seal header: none, a headerless
-- value longer than the header, another format version.
UPDATE provider_connections SET encrypted_credentials = '\x01' WHERE id = :'pending';
UPDATE provider_connections SET encrypted_credentials = '\x00112233445566778899aabbccddeeff' WHERE id = :'pending';
UPDATE provider_connections SET encrypted_credentials = '\x504302000000000f' WHERE id = :'pending';
SELECT provider_credentials(id) = '\x34' AS untouched FROM provider_connections WHERE id = :'pending';

-- Expiring overdue connections: only active ones past the grace, each with
-- its events; a second run finds nothing.
SELECT connection_id AS soon FROM provider_connect(:u, :p, 'a', '\x01', 'oauth2', now() + interval '1 hour') \gset
SELECT connection_id AS late FROM provider_connect(:u, :p, 'b', '\x01', 'oauth2', now() + interval '1 hour') \gset
SELECT connection_id AS later FROM provider_connect(:u, :p, 'c', '\x01', 'oauth2', now() + interval '1 hour') \gset
-- (as a clock would: expiries in the past, written directly)
UPDATE provider_connections SET credentials_expires_at = now() - interval '10 minutes' WHERE id IN (:'late', :'later');
UPDATE provider_connections SET credentials_expires_at = now() - interval '1 minute' WHERE id = :'soon';
-- A negative grace (also one that only adds up to negative) is refused:
-- it would expire credentials that are still valid. Nothing changes.
SELECT provider_expire_overdue('-100 years');
SELECT provider_expire_overdue('1 mon -40 days');
SELECT count(*) FILTER (WHERE status = 'active') AS still_active
  FROM provider_connections WHERE id IN (:'soon', :'late', :'later');
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT provider_expire_overdue('5 minutes') AS expired;
SELECT provider_expire_overdue('5 minutes') AS expired_again;
SELECT provider_slug, status FROM provider_connections WHERE id IN (:'soon', :'late', :'later') ORDER BY 1;
SELECT event_type, count(*) FROM provider_audit_log WHERE id > :mark GROUP BY 1 ORDER BY 1;
SELECT provider_expire_overdue(NULL);
