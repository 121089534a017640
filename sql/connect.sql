-- provider_connect: the cases of the original ConnectProvider handler's
-- unit tests, and the argument checks the SQL interface adds.
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
-- Pin the clock and generated ids so rows and events print the same each run.
SET provider_connections.test_clock = '2026-01-02 03:04:05.678901+00';
SET timezone = 'UTC';

-- Success: an active row, connected_at = created_at = updated_at, and the
-- Attempted then Succeeded events naming the new connection.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT * FROM provider_connect(
    user_id => '11111111-1111-1111-1111-111111111111',
    provider_id => 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
    provider_slug => 'schwab',
    credentials => '\x7b22616363657373223a2274227d',
    expires_at => '2026-02-01 00:00:00+00',
    alias => 'My Schwab');
SELECT id, user_id, provider_id, provider_slug, status, alias, credential_type,
       encrypted_credentials IS NOT NULL AS sealed, credentials_expires_at,
       connected_at, last_sync_at,
       connected_at = created_at AND created_at = updated_at AS same_times
  FROM provider_connections;
SELECT * FROM events WHERE id > :mark ORDER BY id;

-- Without alias.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, error_code, error FROM provider_connect(
    '11111111-1111-1111-1111-111111111111', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
    'chase', '\x01');
SELECT alias, credential_type, credentials_expires_at FROM provider_connections
 WHERE provider_slug = 'chase';
SELECT event_type, connection_id IS NOT NULL AS has_connection FROM events
 WHERE id > :mark ORDER BY id;

-- One user may hold several connections to one provider.
SELECT ok FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x02', alias => 'IRA');
SELECT count(*) FROM provider_connections
 WHERE user_id = '11111111-1111-1111-1111-111111111111' AND provider_slug = 'schwab';

-- api_key and link_token credentials.
SELECT ok, error_code FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'cccccccc-cccc-cccc-cccc-cccccccccccc', 'fidelity', '\x03', 'api_key');
SELECT ok, error_code FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'dddddddd-dddd-dddd-dddd-dddddddddddd', 'plaid', '\x04', 'link_token');
SELECT provider_slug, credential_type FROM provider_connections
 WHERE provider_slug IN ('fidelity', 'plaid') ORDER BY 1;

-- Slugs: empty and 51 characters fail, exactly 50 is accepted; the limit
-- counts characters, not bytes.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, connection_id, error_code, error FROM provider_connect(
    '11111111-1111-1111-1111-111111111111', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', '', '\x01');
SELECT ok, error_code FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', repeat('s', 51), '\x01');
SELECT ok, error_code FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', repeat('s', 50), '\x01');
SELECT ok, error_code FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', repeat('é', 50), '\x01');
SELECT ok, error_code FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', repeat('é', 51), '\x01');
SELECT ok, error_code FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', NULL, '\x01');
-- The Failed events carry the reason, the given slug and no connection.
SELECT event_type, connection_id, length(provider_slug) AS slug_chars, reason
  FROM events WHERE id > :mark ORDER BY id;

-- Credentials: NULL and empty fail; nothing is stored.
SELECT count(*) AS before FROM provider_connections \gset
SELECT ok, error_code, error FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', NULL);
SELECT ok, error_code, error FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '');
SELECT count(*) = :before AS nothing_stored FROM provider_connections;

-- Credential types: only the six known ones.
SELECT t, (provider_connect('11111111-1111-1111-1111-111111111111',
           'eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee', 'etrade', '\x01', t)).error_code
  FROM unnest(ARRAY['oauth2', 'api_key', 'link_token', 'certificate', 'file_import',
                    'custom', 'OAUTH2', 'password', '', NULL]) AS t;

-- Alias: 100 characters accepted, 101 refused.
SELECT ok, error_code FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01', alias => repeat('ä', 100));
SELECT ok, error_code, error FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01', alias => repeat('ä', 101));

-- NULL ids: a failure result naming the argument, never a NULL result.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT * FROM provider_connect(NULL, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');
SELECT * FROM provider_connect('11111111-1111-1111-1111-111111111111', NULL, 'schwab', '\x01');
SELECT * FROM provider_connect(NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SELECT event_type, user_id, provider_id, provider_slug, reason FROM events
 WHERE id > :mark ORDER BY id;

-- expires_at: infinity means "never", -infinity is refused.
SELECT ok FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01', expires_at => 'infinity');
SELECT ok, error_code, error FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01', expires_at => '-infinity');

-- Database error: a user's trigger that raises. The call returns a failure,
-- the Attempted and Failed rows stay, and the transaction goes on. The
-- result and the event carry the error's message only: its detail and hint
-- may quote the row, sealed credentials included.
CREATE FUNCTION refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'disk quota for user % exceeded', NEW.user_id
        USING DETAIL = 'row holds ' || encode(NEW.encrypted_credentials, 'hex'),
              HINT = 'hint quoting ' || NEW.provider_slug;
END $$;
CREATE TRIGGER refuse_insert BEFORE INSERT ON provider_connections
    FOR EACH ROW EXECUTE FUNCTION refuse_insert();
BEGIN;
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT * FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');
SELECT 'still usable' AS transaction;
COMMIT;
SELECT event_type, connection_id, reason FROM events WHERE id > :mark ORDER BY id;
DROP TRIGGER refuse_insert ON provider_connections;
DROP FUNCTION refuse_insert();
-- A CHECK constraint's error quotes the whole failing row in its detail.
ALTER TABLE provider_connections ADD CONSTRAINT no_blocked CHECK (provider_slug <> 'blocked');
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, error_code, error FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'blocked', '\x01');
SELECT event_type, reason FROM events WHERE id > :mark ORDER BY id;
SELECT count(*) AS rows_quoting_the_row FROM provider_audit_log
 WHERE id > :mark AND (reason LIKE '%Failing row%' OR context::text LIKE '%Failing row%');
ALTER TABLE provider_connections DROP CONSTRAINT no_blocked;

-- No key configured: a clear failure, nothing stored. (The key settings
-- take ALTER SYSTEM and a reload, which this session takes before its next
-- statement; the end resets them to the server's own.)
ALTER SYSTEM SET provider_connections.encryption_key_file = '';
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_file;
SELECT count(*) AS before FROM provider_connections \gset
SELECT ok, error_code, error FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');
SELECT count(*) = :before AS nothing_stored FROM provider_connections;
SELECT event_type, reason FROM events ORDER BY id DESC LIMIT 1;
ALTER SYSTEM RESET provider_connections.encryption_key_file;
SELECT pg_reload_conf(), pg_sleep(0.5);
SELECT current_setting('provider_connections.encryption_key_file') <> '' AS key_configured;

-- Fail closed: if the audit row cannot be written the call raises and
-- changes nothing.
CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit storage unavailable';
END $$;
CREATE TRIGGER refuse_audit BEFORE INSERT ON provider_audit_log
    FOR EACH ROW WHEN (NEW.event_type = 'ProviderConnectionSucceeded')
    EXECUTE FUNCTION refuse_audit();
SELECT count(*) AS before FROM provider_connections \gset
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT * FROM provider_connect('11111111-1111-1111-1111-111111111111',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');
SELECT count(*) = :before AS nothing_stored FROM provider_connections;
SELECT count(*) AS audit_rows_left FROM provider_audit_log WHERE id > :mark;
DROP TRIGGER refuse_audit ON provider_audit_log;
DROP FUNCTION refuse_audit();
