-- provider_audit_log is append-only for every role, the owner and
-- superusers included, and in replication mode too.
-- A fresh install of its own, so that this file runs in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
\set VERBOSITY terse

-- The key: the server's own (provider_connections.encryption_key_file in
-- postgresql.conf; the key settings cannot be set per session).
-- History to protect: each command, once succeeding and once failing.
SELECT (provider_connect('10101010-1010-1010-1010-101010101010',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')).connection_id AS c \gset
SELECT ok FROM provider_connect(NULL, NULL, 'schwab', '\x01');
SELECT ok FROM provider_refresh_tokens(:'c', '\x02');
SELECT ok FROM provider_refresh_tokens(:'c', NULL);
SELECT ok FROM provider_disconnect('10101010-1010-1010-1010-101010101010', :'c');
SELECT ok FROM provider_disconnect(gen_random_uuid(), :'c');
SELECT count(*) > 0 AS has_rows FROM provider_audit_log;
SELECT count(*) AS rows_before FROM provider_audit_log \gset

UPDATE provider_audit_log SET reason = 'rewritten' WHERE id = 1;
DELETE FROM provider_audit_log WHERE id = 1;
TRUNCATE provider_audit_log;
SET session_replication_role = replica;
DELETE FROM provider_audit_log;
TRUNCATE provider_audit_log;
RESET session_replication_role;

-- Also the table owner acting as a plain role.
CREATE ROLE audit_owner_test;
GRANT ALL ON provider_audit_log TO audit_owner_test;
SET ROLE audit_owner_test;
UPDATE provider_audit_log SET reason = 'rewritten';
DELETE FROM provider_audit_log;
RESET ROLE;
REVOKE ALL ON provider_audit_log FROM audit_owner_test;
DROP ROLE audit_owner_test;

SELECT count(*) = :rows_before AS nothing_lost FROM provider_audit_log;

-- Every call leaves pairs: one Attempted and one outcome, in that order.
SELECT event_type, count(*) FROM provider_audit_log GROUP BY 1 ORDER BY 1;
SELECT count(*) AS unpaired
  FROM provider_audit_log a
 WHERE a.event_type LIKE '%Attempted'
   AND NOT EXISTS (SELECT 1 FROM provider_audit_log o
                    WHERE o.id = a.id + 1 AND o.event_type NOT LIKE '%Attempted');

-- The context says who called, and who notifies (commit: the caller);
-- event ids are distinct UUIDv7s.
SELECT DISTINCT context->>'current_user' = current_user AS by_caller,
       context->>'session_user' = session_user AS by_session_user,
       context->>'application_name' AS application_name,
       (context->>'backend_pid')::int > 0 AS has_pid,
       (context->>'transaction_id')::bigint > 0 AS has_xid,
       context->>'notify' AS notify
  FROM provider_audit_log ORDER BY application_name;
SELECT count(DISTINCT event_id) = count(*) AS distinct_ids,
       bool_and(substr(event_id::text, 15, 1) = '7') AS all_v7
  FROM provider_audit_log;
