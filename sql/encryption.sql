-- Credentials at rest: sealed with pgcrypto (AES-256 with integrity check)
-- under the configured key, never stored or echoed in plain.
\set VERBOSITY terse
SET provider_connections.encryption_key = 'regress-key-0123456789abcdef-0123456789';

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
SET provider_connections.encryption_key = 'another-key-0123456789abcdef-0123456789';
SELECT provider_credentials(:'c1');
SET provider_connections.encryption_key_previous = 'regress-key-0123456789abcdef-0123456789';
SELECT provider_credentials(:'c1') = '\x00ff00746f702d7365637265742d746f6b656e00'::bytea AS opened_with_previous;
RESET provider_connections.encryption_key_previous;
SET provider_connections.encryption_key = 'regress-key-0123456789abcdef-0123456789';

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

-- The key: too short a key is refused, and so is any place that stores it
-- in a catalog every role can read.
SET provider_connections.encryption_key = 'short';
ALTER ROLE CURRENT_USER SET provider_connections.encryption_key = 'regress-key-0123456789abcdef-0123456789';
ALTER DATABASE contrib_regression SET provider_connections.encryption_key = 'regress-key-0123456789abcdef-0123456789';
CREATE FUNCTION leaky() RETURNS int LANGUAGE sql
    SET provider_connections.encryption_key = 'regress-key-0123456789abcdef-0123456789'
    AS 'SELECT 1';
SELECT count(*) AS stored_settings FROM pg_db_role_setting
 WHERE array_to_string(setconfig, ',') LIKE '%encryption_key%';

-- Other roles can neither read nor set it; it is not listed in pg_settings.
CREATE ROLE key_reader;
SET ROLE key_reader;
SHOW provider_connections.encryption_key;
SELECT current_setting('provider_connections.encryption_key');
SET provider_connections.encryption_key = 'attacker-key-0123456789abcdef-0123456789';
SELECT count(*) AS listed FROM pg_settings WHERE name LIKE 'provider_connections.%';
RESET ROLE;
DROP ROLE key_reader;
