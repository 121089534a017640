-- Key rotation: re-seal every credential under a new key, in batches, then
-- drop the old key; everything still opens. The cluster-level rotation test
-- (test/rotation.sh) rotates while calls run.
-- A fresh install of its own, so that this file runs in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
\set VERBOSITY terse
-- This suite's own key files, written by the server into its data directory
-- (relative key paths are relative to it), readable by the server only.
-- The key settings take postgresql.conf or ALTER SYSTEM only: each change
-- below is an ALTER SYSTEM and a reload, which this session takes before
-- its next statement (the SHOW after the pause shows it did). The end of
-- this file resets them for the suites after it.
COPY (SELECT 'regress-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_regress.key && chmod 600 pc_regress.key';
COPY (SELECT 'rotated-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_rotated.key && chmod 600 pc_rotated.key';
ALTER SYSTEM SET provider_connections.encryption_key_file = 'pc_regress.key';
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_file;

SELECT count(*) AS connected FROM generate_series(1, 6) n,
       provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
                        convert_to('token-' || n, 'UTF8')) r WHERE r.ok;

CREATE TEMP TABLE plain AS
SELECT id, provider_credentials(id) AS credentials
  FROM provider_connections WHERE encrypted_credentials IS NOT NULL;
SELECT count(*) > 3 AS populated FROM plain;
SELECT count(*) AS sealed_now FROM provider_connections WHERE encrypted_credentials IS NOT NULL \gset

-- Not without a superuser, a key, or a sensible batch.
CREATE ROLE pc_rotator;
SET ROLE pc_rotator;
SELECT * FROM provider_rotate_credentials();
RESET ROLE;
DROP ROLE pc_rotator;
SELECT * FROM provider_rotate_credentials(0);

-- Credentials nobody can open (a seal header, then bytes no key made) stop
-- the rotation, naming the connection, and nothing of the batch is changed.
INSERT INTO provider_connections (id, user_id, provider_id, provider_slug, status,
                                  encrypted_credentials, created_at, updated_at)
VALUES ('0bad0000-0000-7000-8000-000000000001', gen_random_uuid(), gen_random_uuid(),
        'broken', 'active', '\x5043010000000000112233', now(), now());
ALTER SYSTEM SET provider_connections.encryption_key_file = 'pc_rotated.key';
ALTER SYSTEM SET provider_connections.encryption_key_previous_file = 'pc_regress.key';
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_previous_file;
\set VERBOSITY default
SELECT * FROM provider_rotate_credentials(100000);
\set VERBOSITY terse
SELECT count(*) AS still_under_old_key FROM provider_connections
 WHERE substr(encrypted_credentials, 1, 7) = (SELECT substr(encrypted_credentials, 1, 7)
                                                FROM provider_connections WHERE id = (SELECT id FROM plain LIMIT 1))
   AND id IN (SELECT id FROM plain);
DELETE FROM provider_connections WHERE id = '0bad0000-0000-7000-8000-000000000001';

-- New key current, old key previous (as set above): batches until nothing
-- remains, and provider_key_status counts down the previous key's share.
SELECT role, credentials = :sealed_now AS all_sealed FROM provider_key_status() ORDER BY role;
-- A full batch does not count what is left (that would scan every row per
-- batch): remaining is NULL, "call again".
SELECT rotated, remaining IS NULL AS call_again FROM provider_rotate_credentials(2);
SELECT rotated = :sealed_now - 2 AS rest_rotated, remaining FROM provider_rotate_credentials(100000);
SELECT * FROM provider_rotate_credentials();
SELECT role, credentials = :sealed_now AS all_sealed, credentials FROM provider_key_status() ORDER BY role;

-- Drop the old key: every credential opens with the new one alone.
ALTER SYSTEM RESET provider_connections.encryption_key_previous_file;
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_previous_file;
SELECT count(*) AS checked, count(*) FILTER (WHERE provider_credentials(p.id) = p.credentials) AS same
  FROM plain p;
SELECT count(DISTINCT substr(encrypted_credentials, 1, 7)) AS key_ids
  FROM provider_connections WHERE encrypted_credentials IS NOT NULL;

-- Rotation touches only the sealed bytes: no status change, no event.
SELECT count(*) AS rotation_events FROM provider_audit_log WHERE event_type LIKE '%Rotat%';

-- Back to the server's own key for the suites after this one: rotate to it.
ALTER SYSTEM RESET provider_connections.encryption_key_file;
ALTER SYSTEM SET provider_connections.encryption_key_previous_file = 'pc_rotated.key';
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_previous_file;
SELECT remaining FROM provider_rotate_credentials(100000);
ALTER SYSTEM RESET provider_connections.encryption_key_previous_file;
SELECT pg_reload_conf(), pg_sleep(0.5);
SELECT current_setting('provider_connections.encryption_key_previous_file') = '' AS no_previous_key,
       current_setting('provider_connections.encryption_key_file') NOT IN ('pc_regress.key', 'pc_rotated.key') AS own_key;
