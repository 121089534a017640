-- provider_disconnect: the cases of the original DisconnectProvider
-- handler's unit tests.
-- A fresh install of its own, so that this file runs in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
-- The audit log without its context column, whose backend pid and
-- transaction id differ from run to run.
CREATE VIEW events AS
SELECT id, event_type, action, user_id, connection_id, provider_id,
       provider_slug, reason, needs_user_action
  FROM provider_audit_log;
\set VERBOSITY terse
-- The key: the server's own (provider_connections.encryption_key_file in
-- postgresql.conf; the key settings cannot be set per session).
SET provider_connections.test_clock = '2026-01-03 00:00:00+00';
SET timezone = 'UTC';

SELECT (provider_connect('22222222-2222-2222-2222-222222222222',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x7365637265742d31',
        'api_key', '2026-06-01', 'to disconnect')).connection_id AS conn \gset

-- Success: status disconnected, credentials, their type and expiry cleared,
-- the row kept; Attempted and Succeeded events with the row's provider.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, connection_id = :'conn' AS same_id, error_code, error
  FROM provider_disconnect('22222222-2222-2222-2222-222222222222', :'conn');
SELECT status, encrypted_credentials, credential_type, credentials_expires_at,
       alias, updated_at
  FROM provider_connections WHERE id = :'conn';
SELECT event_type, action, user_id, connection_id = :'conn' AS conn,
       provider_id, provider_slug, reason
  FROM events WHERE id > :mark ORDER BY id;

-- A second disconnect succeeds again.
SELECT ok, error_code FROM provider_disconnect('22222222-2222-2222-2222-222222222222', :'conn');

-- Not found: Attempted with the caller's user and the given id, provider
-- and slug unknown (NULL, never a placeholder).
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT * FROM provider_disconnect('22222222-2222-2222-2222-222222222222',
                                  '99999999-9999-9999-9999-999999999999');
SELECT event_type, user_id, connection_id, provider_id, provider_slug, reason
  FROM events WHERE id > :mark ORDER BY id;

-- Not owned: another user's connection is left untouched.
SELECT (provider_connect('22222222-2222-2222-2222-222222222222',
        'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', 'chase', '\x01')).connection_id AS other \gset
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, connection_id = :'other' AS same_id, error_code, error
  FROM provider_disconnect('33333333-3333-3333-3333-333333333333', :'other');
SELECT status, encrypted_credentials IS NOT NULL AS has_credentials
  FROM provider_connections WHERE id = :'other';
SELECT event_type, user_id, provider_slug, reason FROM events WHERE id > :mark ORDER BY id;

-- NULL arguments.
SELECT * FROM provider_disconnect(NULL, :'other');
SELECT * FROM provider_disconnect('22222222-2222-2222-2222-222222222222', NULL);
SELECT * FROM provider_disconnect(NULL, NULL);

-- Save error: the UPDATE fails; the row is unchanged, the failure recorded.
CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'replica is read-only';
END $$;
CREATE TRIGGER refuse_update BEFORE UPDATE ON provider_connections
    FOR EACH ROW EXECUTE FUNCTION refuse_update();
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, error_code, error
  FROM provider_disconnect('22222222-2222-2222-2222-222222222222', :'other');
SELECT status FROM provider_connections WHERE id = :'other';
SELECT event_type, provider_slug, reason FROM events WHERE id > :mark ORDER BY id;
DROP TRIGGER refuse_update ON provider_connections;
DROP FUNCTION refuse_update();

-- Inside a transaction the caller rolls back: nothing of the call remains.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
BEGIN;
SELECT ok FROM provider_disconnect('22222222-2222-2222-2222-222222222222', :'other');
ROLLBACK;
SELECT status FROM provider_connections WHERE id = :'other';
SELECT count(*) AS audit_rows FROM provider_audit_log WHERE id > :mark;

-- Disconnect decides with the state machine's table: from every status
-- (rows put there directly), disconnected is reachable.
INSERT INTO provider_connections (id, user_id, provider_id, provider_slug, status,
                                  created_at, updated_at)
VALUES ('5d000000-0000-7000-8000-000000000001', '22222222-2222-2222-2222-222222222222',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', 'pending', now(), now());
SELECT ok, error_code FROM provider_disconnect('22222222-2222-2222-2222-222222222222',
                                               '5d000000-0000-7000-8000-000000000001');
SELECT (provider_connect('22222222-2222-2222-2222-222222222222',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')).connection_id AS to_expire \gset
SELECT (provider_connect('22222222-2222-2222-2222-222222222222',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')).connection_id AS to_revoke \gset
UPDATE provider_connections SET status = 'expired' WHERE id = :'to_expire';
UPDATE provider_connections SET status = 'revoked' WHERE id = :'to_revoke';
SELECT ok, error_code FROM provider_disconnect('22222222-2222-2222-2222-222222222222', :'to_expire');
SELECT ok, error_code FROM provider_disconnect('22222222-2222-2222-2222-222222222222', :'to_revoke');
SELECT count(*) AS disconnected FROM provider_connections
 WHERE id IN ('5d000000-0000-7000-8000-000000000001', :'to_expire', :'to_revoke')
   AND status = 'disconnected' AND encrypted_credentials IS NULL;
