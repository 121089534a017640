-- Credentials at rest: sealed with pgcrypto (AES-256 with integrity check)
-- under the configured key, never stored or echoed in plain.
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
COPY (SELECT 'another-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_another.key && chmod 600 pc_another.key';
ALTER SYSTEM SET provider_connections.encryption_key_file = 'pc_regress.key';
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_file;

-- Round trip of arbitrary bytes, zero bytes included.
SELECT (provider_connect('77777777-7777-7777-7777-777777777777',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
        '\x00ff00746f702d7365637265742d746f6b656e00')).connection_id AS c1 \gset
SELECT provider_credentials(:'c1') = '\x00ff00746f702d7365637265742d746f6b656e00'::bytea AS round_trip;

-- No plaintext in the table; the stored value is our header + a PGP message.
SELECT position('\x746f702d7365637265742d746f6b656e'::bytea IN encrypted_credentials) AS plaintext_at,
       substr(encrypted_credentials, 1, 3) AS header,
       length(encrypted_credentials) > 40 AS sealed
  FROM provider_connections WHERE id = :'c1';

-- Two seals of one value differ (fresh salt and IV per write).
SELECT (provider_connect('77777777-7777-7777-7777-777777777777',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
        '\x00ff00746f702d7365637265742d746f6b656e00')).connection_id AS c2 \gset
SELECT a.encrypted_credentials <> b.encrypted_credentials AS differ,
       substr(a.encrypted_credentials, 1, 7) = substr(b.encrypted_credentials, 1, 7) AS same_key_id,
       provider_credentials(a.id) = provider_credentials(b.id) AS same_plain
  FROM provider_connections a, provider_connections b
 WHERE a.id = :'c1' AND b.id = :'c2';

-- Neither the plain nor the sealed bytes reach the audit log.
SELECT count(*) AS leaks
  FROM provider_audit_log a, provider_connections c
 WHERE c.id IN (:'c1', :'c2')
   AND (strpos(a::text, 'top-secret-token') > 0
        OR strpos(a::text, encode(c.encrypted_credentials, 'hex')) > 0);

-- Tampering is detected: byte 30 flipped (a byte overwritten with a fixed
-- value would leave it unchanged one time in 256).
BEGIN;
UPDATE provider_connections
   SET encrypted_credentials = set_byte(encrypted_credentials, 29, get_byte(encrypted_credentials, 29) # 255)
 WHERE id = :'c1';
SELECT provider_credentials(:'c1');
ROLLBACK;

-- A value with the first magic byte and the version right but the second
-- magic byte wrong is not ours: the guard refuses to store it, and one
-- stored past the guard (a superuser disabling it) does not open.
UPDATE provider_connections
   SET encrypted_credentials = overlay(encrypted_credentials placing '\x58' from 2 for 1)
 WHERE id = :'c1';
BEGIN;
ALTER TABLE provider_connections DISABLE TRIGGER provider_connections_guard;
UPDATE provider_connections
   SET encrypted_credentials = overlay(encrypted_credentials placing '\x58' from 2 for 1)
 WHERE id = :'c1';
ALTER TABLE provider_connections ENABLE ALWAYS TRIGGER provider_connections_guard;
SELECT substr(encrypted_credentials, 1, 3) AS header FROM provider_connections WHERE id = :'c1';
\set VERBOSITY default
SELECT provider_credentials(:'c1');
\set VERBOSITY terse
ROLLBACK;

-- Another key cannot open it; keeping the old key as the previous one can.
ALTER SYSTEM SET provider_connections.encryption_key_file = 'pc_another.key';
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_file;
SELECT provider_credentials(:'c1');
ALTER SYSTEM SET provider_connections.encryption_key_previous_file = 'pc_regress.key';
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_previous_file;
SELECT provider_credentials(:'c1') = '\x00ff00746f702d7365637265742d746f6b656e00'::bytea AS opened_with_previous;
ALTER SYSTEM RESET provider_connections.encryption_key_previous_file;
ALTER SYSTEM SET provider_connections.encryption_key_file = 'pc_regress.key';
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_file;

-- Connections without credentials and unknown ids give NULL.
SELECT provider_credentials(NULL) IS NULL AS null_id,
       provider_credentials('99999999-9999-9999-9999-999999999999') IS NULL AS unknown_id;

-- Size limit: 1 MiB accepted, one byte more and 10 MB refused without
-- running out of memory.
SELECT ok, error_code FROM provider_connect('77777777-7777-7777-7777-777777777777',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
    decode(repeat('ab', 1024 * 1024), 'hex'));
SELECT ok, error_code, error FROM provider_connect('77777777-7777-7777-7777-777777777777',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
    decode(repeat('ab', 1024 * 1024 + 1), 'hex'));
SELECT ok, error_code FROM provider_refresh_tokens(:'c1',
    decode(repeat('ab', 10 * 1024 * 1024), 'hex'));
SELECT provider_credentials(:'c1') = '\x00ff00746f702d7365637265742d746f6b656e00'::bytea AS unchanged;

-- The key comes from a file, never from a setting's value: the 1.1 settings
-- that held the key refuse any value, wherever it would be set, and the
-- message never quotes it.
SET provider_connections.encryption_key = 'regress-key-0123456789abcdef-0123456789';
SET provider_connections.encryption_key_previous = 'regress-key-0123456789abcdef-0123456789';
ALTER SYSTEM SET provider_connections.encryption_key = 'regress-key-0123456789abcdef-0123456789';
ALTER ROLE CURRENT_USER SET provider_connections.encryption_key = 'regress-key-0123456789abcdef-0123456789';
ALTER DATABASE contrib_regression SET provider_connections.encryption_key = 'regress-key-0123456789abcdef-0123456789';
CREATE FUNCTION leaky() RETURNS int LANGUAGE sql
    SET provider_connections.encryption_key = 'regress-key-0123456789abcdef-0123456789'
    AS 'SELECT 1';
SELECT count(*) AS stored_settings FROM pg_db_role_setting
 WHERE array_to_string(setconfig, ',') LIKE '%provider_connections.encryption_key%';
SHOW provider_connections.encryption_key;

-- The key file settings are the server's alone (PGC_SIGHUP): a key set per
-- session, role, database or function would seal credentials that the
-- other sessions cannot open, so every such source is refused (55P02) and
-- nothing is stored. Shown by SQLSTATE, then by message.
\set VERBOSITY sqlstate
SET provider_connections.encryption_key_file = 'pc_another.key';
SET provider_connections.encryption_key_previous_file = 'pc_another.key';
SELECT set_config('provider_connections.encryption_key_file', 'pc_another.key', false);
ALTER ROLE CURRENT_USER SET provider_connections.encryption_key_file = 'pc_another.key';
ALTER ROLE CURRENT_USER IN DATABASE contrib_regression SET provider_connections.encryption_key_previous_file = 'pc_another.key';
ALTER DATABASE contrib_regression SET provider_connections.encryption_key_file = 'pc_another.key';
ALTER DATABASE contrib_regression SET provider_connections.encryption_key_previous_file = 'pc_another.key';
CREATE FUNCTION keyed() RETURNS int LANGUAGE sql
    SET provider_connections.encryption_key_file = 'pc_another.key'
    AS 'SELECT 1';
CREATE FUNCTION unkeyed() RETURNS int LANGUAGE sql AS 'SELECT 1';
ALTER FUNCTION unkeyed() SET provider_connections.encryption_key_previous_file = 'pc_another.key';
\set VERBOSITY terse
SET provider_connections.encryption_key_file = 'pc_another.key';
ALTER ROLE CURRENT_USER SET provider_connections.encryption_key_file = 'pc_another.key';
DROP FUNCTION unkeyed();
SELECT count(*) AS stored_settings FROM pg_db_role_setting
 WHERE array_to_string(setconfig, ',') LIKE '%provider_connections.encryption_key%';
SELECT count(*) AS function_settings FROM pg_proc
 WHERE array_to_string(proconfig, ',') LIKE '%provider_connections.encryption_key%';
SHOW provider_connections.encryption_key_file;

-- A key file that group or others can read is refused when set, as
-- PostgreSQL refuses such an ssl_key_file, and so is a missing one, and one
-- the server cannot open for reading (mode 0000 passes the ownership and
-- mode rules, as a file left owned by root with mode 0600 does, yet no key
-- could be read from it); the setting keeps its value.
COPY (SELECT 'readable-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_readable.key && chmod 644 pc_readable.key';
COPY (SELECT 'unreadable-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_unreadable.key && chmod 000 pc_unreadable.key';
\set VERBOSITY default
ALTER SYSTEM SET provider_connections.encryption_key_file = 'pc_readable.key';
ALTER SYSTEM SET provider_connections.encryption_key_file = 'pc_missing.key';
ALTER SYSTEM SET provider_connections.encryption_key_file = 'pc_unreadable.key';
ALTER SYSTEM SET provider_connections.encryption_key_previous_file = 'pc_unreadable.key';
\set VERBOSITY terse
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_file;
SHOW provider_connections.encryption_key_previous_file;

-- A file that becomes readable by others later, or holds too short a key,
-- or a zero byte, is refused when the key is loaded: calls fail with
-- encryption_unavailable, naming the file and never its content.
-- (A failed load is not kept: the next call tries again, so each call
-- below reports the file's state when it runs.)
COPY (SELECT 'later-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_another.key';
ALTER SYSTEM SET provider_connections.encryption_key_file = 'pc_another.key';
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_file;
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null; chmod 640 pc_another.key';
SELECT ok, error_code, error FROM provider_connect('77777777-7777-7777-7777-777777777777',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');
COPY (SELECT 'short') TO PROGRAM 'cat > pc_another.key';
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null; chmod 600 pc_another.key';
SELECT ok, error_code, error FROM provider_connect('77777777-7777-7777-7777-777777777777',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null; printf ''zero-byte-key-0123456789abcdef\000-0123456789'' > pc_another.key';
SELECT ok, error_code, error FROM provider_connect('77777777-7777-7777-7777-777777777777',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');

-- The key file is read once per backend and again whenever the setting is
-- assigned (any reload, also one that leaves its value as it was): a new
-- file content is used after that.
COPY (SELECT 'rewritten-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_another.key';
SELECT (provider_connect('77777777-7777-7777-7777-777777777777',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x02')).connection_id AS c3 \gset
COPY (SELECT 'rewritten-again-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_another.key';
SELECT provider_credentials(:'c3') = '\x02' AS cached_key_opens;
SELECT pg_reload_conf(), pg_sleep(0.5);
SELECT provider_credentials(:'c3');
SELECT ok FROM provider_disconnect('77777777-7777-7777-7777-777777777777', :'c3');
ALTER SYSTEM SET provider_connections.encryption_key_file = 'pc_regress.key';
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_file;

-- Other roles can neither read nor set where the key is, and the key
-- settings are not listed for them in pg_settings.
CREATE ROLE key_reader;
SET ROLE key_reader;
-- By SQLSTATE: the wording of this refusal changed in PostgreSQL 16.
\set VERBOSITY sqlstate
SHOW provider_connections.encryption_key_file;
SELECT current_setting('provider_connections.encryption_key_file');
\set VERBOSITY terse
SET provider_connections.encryption_key_file = 'pc_attacker.key';
ALTER SYSTEM SET provider_connections.encryption_key_file = 'pc_attacker.key';
SELECT count(*) AS listed FROM pg_settings WHERE name LIKE 'provider_connections.%key%';
RESET ROLE;
DROP ROLE key_reader;

-- provider_key_status: per key id, how many stored credentials it seals,
-- and which configured key it is; the configured keys have a row also when
-- they seal nothing. Superuser only.
SELECT role, credentials FROM provider_key_status() ORDER BY role;
COPY (SELECT 'status-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_rotated_status.key && chmod 600 pc_rotated_status.key';
ALTER SYSTEM SET provider_connections.encryption_key_file = 'pc_rotated_status.key';
ALTER SYSTEM SET provider_connections.encryption_key_previous_file = 'pc_regress.key';
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_previous_file;
SELECT role, credentials FROM provider_key_status() ORDER BY role;
SELECT key_id = encode(substr(encrypted_credentials, 4, 4), 'hex') AS id_as_stored
  FROM provider_key_status(), provider_connections
 WHERE role = 'previous' AND id = :'c1';
SELECT ok FROM provider_connect('77777777-7777-7777-7777-777777777777',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x03');
SELECT role, credentials FROM provider_key_status() ORDER BY role;
-- A key no configured key has: unknown (here, once the previous one is gone).
ALTER SYSTEM RESET provider_connections.encryption_key_previous_file;
SELECT pg_reload_conf(), pg_sleep(0.5);
SHOW provider_connections.encryption_key_previous_file;
SELECT role, credentials FROM provider_key_status() ORDER BY role;
CREATE ROLE key_status_reader;
SET ROLE key_status_reader;
SELECT * FROM provider_key_status();
RESET ROLE;
GRANT EXECUTE ON FUNCTION provider_key_status() TO key_status_reader;
SET ROLE key_status_reader;
SELECT * FROM provider_key_status();
RESET ROLE;
REVOKE EXECUTE ON FUNCTION provider_key_status() FROM key_status_reader;
DROP ROLE key_status_reader;

-- Back to the server's own key settings for the suites after this one.
ALTER SYSTEM RESET provider_connections.encryption_key_file;
ALTER SYSTEM RESET provider_connections.encryption_key_previous_file;
SELECT pg_reload_conf(), pg_sleep(0.5);
SELECT current_setting('provider_connections.encryption_key_previous_file') = '' AS no_previous_key,
       current_setting('provider_connections.encryption_key_file') <> 'pc_rotated_status.key' AS own_key;
