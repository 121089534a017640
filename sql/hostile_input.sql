-- NULL in every argument position of every function: always a failure
-- result naming the problem, never a NULL result, an error or a crash.
-- A fresh install of its own, so that this file runs in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
\set VERBOSITY terse
-- The key: the server's own (provider_connections.encryption_key_file in
-- postgresql.conf; the key settings cannot be set per session).

SELECT (provider_connect('12121212-1212-1212-1212-121212121212',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')).connection_id AS conn \gset

SELECT 'connect' AS fn, pos, (r).ok, (r).error_code, (r).error FROM (
    SELECT 1 AS pos, provider_connect(NULL, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 's', '\x01', 'oauth2', now() + interval '1 hour', 'a') AS r
    UNION ALL SELECT 2, provider_connect('12121212-1212-1212-1212-121212121212', NULL, 's', '\x01', 'oauth2', now() + interval '1 hour', 'a')
    UNION ALL SELECT 3, provider_connect('12121212-1212-1212-1212-121212121212', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', NULL, '\x01', 'oauth2', now() + interval '1 hour', 'a')
    UNION ALL SELECT 4, provider_connect('12121212-1212-1212-1212-121212121212', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 's', NULL, 'oauth2', now() + interval '1 hour', 'a')
    UNION ALL SELECT 5, provider_connect('12121212-1212-1212-1212-121212121212', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 's', '\x01', NULL, now(), 'a')
    UNION ALL SELECT 6, provider_connect('12121212-1212-1212-1212-121212121212', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 's', '\x01', 'oauth2', NULL, 'a')
    UNION ALL SELECT 7, provider_connect('12121212-1212-1212-1212-121212121212', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 's', '\x01', 'oauth2', now() + interval '1 hour', NULL)
) s ORDER BY pos;

SELECT 'disconnect' AS fn, pos, (r).ok, (r).error_code, (r).error FROM (
    SELECT 1 AS pos, provider_disconnect(NULL, :'conn') AS r
    UNION ALL SELECT 2, provider_disconnect('12121212-1212-1212-1212-121212121212', NULL)
) s ORDER BY pos;

SELECT 'refresh' AS fn, pos, (r).ok, (r).error_code, (r).error FROM (
    SELECT 1 AS pos, provider_refresh_tokens(NULL, '\x02', now(), 'api_key') AS r
    UNION ALL SELECT 2, provider_refresh_tokens(:'conn', NULL, now(), 'api_key')
    UNION ALL SELECT 3, provider_refresh_tokens(:'conn', '\x03', NULL, 'api_key')
    UNION ALL SELECT 4, provider_refresh_tokens(:'conn', '\x04', now(), NULL)
) s ORDER BY pos;

SELECT provider_credentials(NULL) IS NULL AS credentials_null;
SELECT count(*) AS feed_null_position FROM provider_events_since(NULL);
SELECT count(*) AS feed_null_limit FROM provider_events_since(0, NULL);

-- Every invalid credential type is refused, on refresh too.
SELECT left(t, 12) AS type, length(t), (provider_refresh_tokens(:'conn', '\x05', NULL, t)).error_code
  FROM unnest(ARRAY['', ' oauth2', 'oauth2 ', 'Api_Key', 'link-token', 'x509',
                    repeat('z', 10000)]) AS t;

-- Text that is odd but valid: quotes, backslashes, newlines and emoji in
-- a slug are stored as given (specs/notify.spec shows payload escaping).
SELECT ok FROM provider_connect('12121212-1212-1212-1212-121212121212',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', E'we"ird\\slug\n🏦', '\x01');
SELECT provider_slug = E'we"ird\\slug\n🏦' AS stored_as_given
  FROM provider_connections ORDER BY created_at DESC, id DESC LIMIT 1;

-- A slug of 10 MB: refused, and the event keeps at most 200 bytes of it.
SELECT ok, error_code FROM provider_connect('12121212-1212-1212-1212-121212121212',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', repeat('ü', 5 * 1024 * 1024), '\x01');
SELECT octet_length(provider_slug) AS kept_bytes, char_length(provider_slug) AS kept_chars
  FROM provider_audit_log ORDER BY id DESC LIMIT 1;

-- Timestamps at the edges.
SELECT ok FROM provider_refresh_tokens(:'conn', '\x06', 'infinity');
SELECT credentials_expires_at FROM provider_connections WHERE id = :'conn';
SELECT ok, error_code FROM provider_refresh_tokens(:'conn', '\x07', '-infinity');
