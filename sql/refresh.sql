-- provider_refresh_tokens: the cases of the original RefreshProviderTokens
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
SET provider_connections.test_clock = '2026-01-04 00:00:00+00';
SET timezone = 'UTC';

SELECT (provider_connect('44444444-4444-4444-4444-444444444444',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x6f6c64',
        expires_at => '2026-01-05')).connection_id AS conn \gset

-- Success: new credentials and expiry stored, the type kept when not given;
-- Attempted and Succeeded carry the row's user, provider and slug.
SET provider_connections.test_clock = '2026-01-04 01:00:00+00';
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, connection_id = :'conn' AS same_id, error_code, error
  FROM provider_refresh_tokens(:'conn', '\x6e6577', '2026-01-06');
SELECT provider_credentials(:'conn') AS credentials, credential_type,
       credentials_expires_at, updated_at, created_at
  FROM provider_connections WHERE id = :'conn';
SELECT event_type, action, user_id, connection_id = :'conn' AS conn, provider_id,
       provider_slug, reason, needs_user_action
  FROM events WHERE id > :mark ORDER BY id;

-- expires_at NULL: the new credentials do not expire; a new type is stored.
SELECT ok FROM provider_refresh_tokens(:'conn', '\x6e657732', NULL, 'api_key');
SELECT provider_credentials(:'conn') AS credentials, credential_type, credentials_expires_at
  FROM provider_connections WHERE id = :'conn';

-- Not found: needs_user_action false; user, provider and slug unknown.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT * FROM provider_refresh_tokens('99999999-9999-9999-9999-999999999999', '\x01');
SELECT event_type, user_id, provider_id, provider_slug, reason, needs_user_action
  FROM events WHERE id > :mark ORDER BY id;

-- Missing credentials: needs_user_action false, nothing changed.
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, error_code, error FROM provider_refresh_tokens(:'conn', NULL);
SELECT ok, error_code, error FROM provider_refresh_tokens(:'conn', '');
SELECT provider_credentials(:'conn') AS unchanged;
SELECT event_type, reason, needs_user_action FROM events WHERE id > :mark ORDER BY id;

-- Invalid credential type; NULL connection id.
SELECT ok, error_code FROM provider_refresh_tokens(:'conn', '\x01', NULL, 'password');
SELECT * FROM provider_refresh_tokens(NULL, '\x01');
SELECT * FROM provider_refresh_tokens(NULL, NULL, NULL, NULL);

-- Not active (disconnected): not_active with needs_user_action true; the
-- user must connect again.
SELECT ok FROM provider_disconnect('44444444-4444-4444-4444-444444444444', :'conn');
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, error_code, error FROM provider_refresh_tokens(:'conn', '\x01');
SELECT status, encrypted_credentials FROM provider_connections WHERE id = :'conn';
SELECT event_type, user_id, provider_slug, reason, needs_user_action
  FROM events WHERE id > :mark ORDER BY id;

-- Not active (expired, set directly): refresh does not revive it.
SELECT (provider_connect('44444444-4444-4444-4444-444444444444',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')).connection_id AS exp \gset
UPDATE provider_connections SET status = 'expired' WHERE id = :'exp';
SELECT ok, error_code FROM provider_refresh_tokens(:'exp', '\x02');

-- Save error: the UPDATE fails; credentials unchanged, failure recorded with
-- needs_user_action false.
SELECT (provider_connect('44444444-4444-4444-4444-444444444444',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x6b656570')).connection_id AS keep \gset
CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'replica is read-only';
END $$;
CREATE TRIGGER refuse_update BEFORE UPDATE ON provider_connections
    FOR EACH ROW EXECUTE FUNCTION refuse_update();
SELECT coalesce(max(id), 0) AS mark FROM provider_audit_log \gset
SELECT ok, error_code, error FROM provider_refresh_tokens(:'keep', '\x01');
SELECT provider_credentials(:'keep') AS unchanged;
SELECT event_type, reason, needs_user_action FROM events WHERE id > :mark ORDER BY id;
DROP TRIGGER refuse_update ON provider_connections;
DROP FUNCTION refuse_update();

-- No key configured: refused, nothing stored. (The key settings take
-- ALTER SYSTEM and a reload, which this session takes before its next
-- statement; then back to the server's own.)
ALTER SYSTEM SET provider_connections.encryption_key_file = '';
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_file;
SELECT ok, error_code, error FROM provider_refresh_tokens(:'keep', '\x01');
ALTER SYSTEM RESET provider_connections.encryption_key_file;
SELECT pg_reload_conf(), pg_sleep(0.5);
SELECT current_setting('provider_connections.encryption_key_file') <> '' AS key_configured;
SELECT provider_credentials(:'keep') AS unchanged;
