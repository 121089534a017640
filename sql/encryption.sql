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
COPY (SELECT 'regress-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_regress.key && chmod 600 pc_regress.key';
COPY (SELECT 'another-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_another.key && chmod 600 pc_another.key';
SET provider_connections.encryption_key_file = 'pc_regress.key';

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

-- Tampering is detected.
BEGIN;
UPDATE provider_connections
   SET encrypted_credentials = overlay(encrypted_credentials placing '\x00' from 30 for 1)
 WHERE id = :'c1';
SELECT provider_credentials(:'c1');
ROLLBACK;

-- Another key cannot open it; keeping the old key as the previous one can.
SET provider_connections.encryption_key_file = 'pc_another.key';
SELECT provider_credentials(:'c1');
SET provider_connections.encryption_key_previous_file = 'pc_regress.key';
SELECT provider_credentials(:'c1') = '\x00ff00746f702d7365637265742d746f6b656e00'::bytea AS opened_with_previous;
RESET provider_connections.encryption_key_previous_file;
SET provider_connections.encryption_key_file = 'pc_regress.key';

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

-- A key file that group or others can read is refused when set, as
-- PostgreSQL refuses such an ssl_key_file, and so is a missing one; the
-- setting keeps its value.
COPY (SELECT 'readable-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_readable.key && chmod 644 pc_readable.key';
\set VERBOSITY default
SET provider_connections.encryption_key_file = 'pc_readable.key';
SET provider_connections.encryption_key_file = 'pc_missing.key';
\set VERBOSITY terse
SHOW provider_connections.encryption_key_file;

-- A file that becomes readable by others later, or holds too short a key,
-- or a zero byte, is refused when the key is loaded: calls fail with
-- encryption_unavailable, naming the file and never its content.
COPY (SELECT 'later-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_another.key';
SET provider_connections.encryption_key_file = 'pc_another.key';
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null; chmod 640 pc_another.key';
SELECT ok, error_code, error FROM provider_connect('77777777-7777-7777-7777-777777777777',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');
COPY (SELECT 'short') TO PROGRAM 'cat > pc_short.key && chmod 600 pc_short.key';
SET provider_connections.encryption_key_file = 'pc_short.key';
SELECT ok, error_code, error FROM provider_connect('77777777-7777-7777-7777-777777777777',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null; printf ''zero-byte-key-0123456789abcdef\000-0123456789'' > pc_zero.key && chmod 600 pc_zero.key';
SET provider_connections.encryption_key_file = 'pc_zero.key';
SELECT ok, error_code, error FROM provider_connect('77777777-7777-7777-7777-777777777777',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');
SET provider_connections.encryption_key_file = 'pc_regress.key';

-- The key file is read once per backend and again whenever the setting is
-- assigned (a SET, or any reload): a new file content is used after that.
COPY (SELECT 'rewritten-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_another.key';
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null; chmod 600 pc_another.key';
SET provider_connections.encryption_key_file = 'pc_another.key';
SELECT (provider_connect('77777777-7777-7777-7777-777777777777',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x02')).connection_id AS c3 \gset
COPY (SELECT 'rewritten-again-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_another.key';
SELECT provider_credentials(:'c3') = '\x02' AS cached_key_opens;
SET provider_connections.encryption_key_file = 'pc_another.key';
SELECT provider_credentials(:'c3');
SELECT ok FROM provider_disconnect('77777777-7777-7777-7777-777777777777', :'c3');
SET provider_connections.encryption_key_file = 'pc_regress.key';

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
SELECT count(*) AS listed FROM pg_settings WHERE name LIKE 'provider_connections.%key%';
RESET ROLE;
DROP ROLE key_reader;
