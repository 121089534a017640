-- Ids are UUIDv7 (RFC 9562), made in C: version 7, variant 10, a Unix
-- millisecond timestamp in front, increasing within a session.
-- This suite's own key files, written by the server into its data directory
-- (relative key paths are relative to it), readable by the server only.
-- A fresh install of its own, so that this file runs in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
-- The key: the server's own (provider_connections.encryption_key_file in
-- postgresql.conf; the key settings cannot be set per session).
RESET provider_connections.test_clock;

CREATE TEMP TABLE made AS
SELECT n, (provider_connect('88888888-8888-8888-8888-888888888888',
           'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')).connection_id AS id,
       clock_timestamp() AS at
  FROM generate_series(1, 200) AS n;

SELECT count(*) AS ids, count(DISTINCT id) AS distinct_ids,
       bool_and(substr(id::text, 15, 1) = '7') AS version_7,
       bool_and(substr(id::text, 20, 1) IN ('8', '9', 'a', 'b')) AS variant_10
  FROM made;

-- The embedded time is the creation time, within a second.
SELECT bool_and(abs(('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint
                    - (extract(epoch FROM at) * 1000)::bigint) < 1000) AS time_prefix
  FROM made;

-- Made one after another, they sort in creation order.
SELECT bool_and(id > lag) AS increasing
  FROM (SELECT id, lag(id) OVER (ORDER BY n) FROM made) s WHERE lag IS NOT NULL;

-- Audit event ids too, in audit order.
SELECT bool_and(event_id > lag) AS events_increasing
  FROM (SELECT event_id, lag(event_id) OVER (ORDER BY id)
          FROM provider_audit_log WHERE user_id = '88888888-8888-8888-8888-888888888888') s
 WHERE lag IS NOT NULL;
