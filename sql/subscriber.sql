-- A logical replication subscriber refuses every write but the apply
-- worker's, before writing anything (SQLSTATE 25006): each SQL function
-- that writes, and direct INSERT, UPDATE, DELETE and TRUNCATE. The
-- publisher is a database of this same cluster; t/010_replication.pl runs
-- a real pair of clusters, this file keeps each refusal in the fast suite.
\set VERBOSITY terse
CREATE DATABASE pc_pub;
CREATE DATABASE pc_sub;
\c pc_pub
CREATE EXTENSION provider_connections CASCADE;
CREATE PUBLICATION pc_regress_pub FOR TABLE provider_connections, provider_audit_log, provider_event_positions;
-- A subscription to a database of the same cluster needs its slot made apart.
SELECT 1 AS slot FROM pg_create_logical_replication_slot('pc_regress_sub', 'pgoutput');

\c pc_sub
CREATE EXTENSION provider_connections CASCADE;
-- A connection of the subscriber's own, from before it subscribed.
SELECT connection_id AS conn FROM provider_connect('16161616-1616-1616-1616-161616161616',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01', 'oauth2', now() + interval '1 hour') \gset
SELECT count(*) AS events_before FROM provider_audit_log \gset
SELECT format('dbname=pc_pub host=%s port=%s', split_part(current_setting('unix_socket_directories'), ',', 1),
              current_setting('port')) AS conninfo \gset
CREATE SUBSCRIPTION pc_regress_sub CONNECTION :'conninfo' PUBLICATION pc_regress_pub
    WITH (create_slot = false, slot_name = 'pc_regress_sub', copy_data = false);

SELECT provider_expire_overdue('0');
SELECT provider_connect('16161616-1616-1616-1616-161616161616', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');
SELECT provider_connect('16161616-1616-1616-1616-161616161616', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01',
                        connection_id => :'conn');
SELECT provider_begin_connect('16161616-1616-1616-1616-161616161616', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab');
SELECT provider_disconnect('16161616-1616-1616-1616-161616161616', :'conn');
SELECT provider_refresh_tokens(:'conn', '\x02');
SELECT provider_mark_failed(:'conn', 'x');
SELECT provider_mark_expired(:'conn');
SELECT provider_mark_revoked(:'conn');
SELECT provider_record_sync(:'conn');
SELECT * FROM provider_rotate_credentials(10);
SELECT provider_purge_events(now(), 0);
SELECT * FROM provider_claim_expiring('1 day');
INSERT INTO provider_connections (id, user_id, provider_id, provider_slug, status, created_at, updated_at)
VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'x', 'pending', now(), now());
UPDATE provider_connections SET alias = 'local';
DELETE FROM provider_connections;
TRUNCATE provider_connections;
-- Nothing was written; reading still works.
SELECT count(*) = :events_before AS no_event_written, (SELECT count(*) FROM provider_connections) AS connections
  FROM provider_audit_log;
SELECT provider_credentials(:'conn');

DROP SUBSCRIPTION pc_regress_sub;
\c contrib_regression
DROP DATABASE pc_sub;
DROP DATABASE pc_pub;
