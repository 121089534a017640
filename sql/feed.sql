-- The event feed outside concurrency (specs/feed_order.spec covers that):
-- every committed audit row has exactly one position once the feed is read;
-- rolled-back work has none.
-- A fresh install of its own, so that this file runs in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
\set VERBOSITY terse
-- The key: the server's own (provider_connections.encryption_key_file in
-- postgresql.conf; the key settings cannot be set per session).

-- Some committed history: four calls, one of them a failure.
SELECT count(*) FILTER (WHERE (r).ok) AS ok, count(*) AS calls FROM (
    SELECT provider_connect('13131313-1313-1313-1313-131313131313',
                            'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'history', '\x01') AS r
      FROM generate_series(1, 3)
    UNION ALL
    SELECT provider_connect(NULL, NULL, NULL, NULL)) calls;

-- Positions are assigned after commit; a read of the feed first numbers
-- everything committed before it.
SELECT count(*) AS read FROM provider_events_since(0, 0);
SELECT (SELECT count(*) FROM provider_audit_log) = (SELECT count(*) FROM provider_event_positions)
       AS every_event_positioned,
       (SELECT count(*) FROM provider_event_positions p
         WHERE NOT EXISTS (SELECT 1 FROM provider_audit_log a WHERE a.id = p.audit_id)) AS orphans;

-- One session: positions follow commit order, which here is id order.
SELECT bool_and(audit_id > lag) AS in_commit_order
  FROM (SELECT audit_id, lag(audit_id) OVER (ORDER BY global_position)
          FROM provider_event_positions) s WHERE lag IS NOT NULL;

SELECT coalesce(max(global_position), 0) AS head FROM provider_event_positions \gset

-- A rolled-back call leaves no position; a rolled-back savepoint drops only
-- its own events.
BEGIN;
SELECT ok FROM provider_connect('13131313-1313-1313-1313-131313131313',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'rolled-back', '\x01');
ROLLBACK;
BEGIN;
SELECT ok FROM provider_connect('13131313-1313-1313-1313-131313131313',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'kept', '\x01');
SAVEPOINT s;
SELECT ok FROM provider_connect('13131313-1313-1313-1313-131313131313',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'undone', '\x01');
ROLLBACK TO SAVEPOINT s;
SELECT ok FROM provider_connect('13131313-1313-1313-1313-131313131313',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'kept-too', '\x01');
COMMIT;
SELECT global_position - :head AS position, provider_slug, event_type
  FROM provider_events_since(:head) ORDER BY global_position;

-- max_events bounds a page; a consumer resumes from the last position.
SELECT count(*) AS page FROM provider_events_since(:head, 3);
SELECT min(global_position) - :head AS next_page_starts_at
  FROM provider_events_since(:head + 3, 3);
SELECT count(*) AS past_the_head FROM provider_events_since(:head + 100);
SELECT * FROM provider_events_since(0, -1);

-- The feed never carries credentials: its columns.
SELECT string_agg(attname, ', ' ORDER BY attnum) AS columns
  FROM pg_attribute WHERE attrelid = 'provider_event_positions'::regclass AND attnum > 0;
SELECT string_agg(name, ', ') AS feed_columns
  FROM (SELECT unnest(proargnames) AS name, unnest(proargmodes) AS mode
          FROM pg_proc WHERE proname = 'provider_events_since') s WHERE mode = 't';

-- Positions are append-only too.
UPDATE provider_event_positions SET global_position = global_position + 1000;
DELETE FROM provider_event_positions;
TRUNCATE provider_event_positions;

-- A database no worker serves (a template: the launcher serves none), where
-- provider_events_since numbers events itself, in the reader's transaction.
-- Its snapshot shows the reader's own events, not committed: a round must
-- never number them, neither the first round of a new install nor a later
-- one; if the transaction rolls back they must leave no position, and if
-- it commits they are numbered by the next read. provider_feed_head()
-- numbers what committed before it, as the feed does, so it is never
-- behind committed events (here no worker round ever comes).
-- The own transaction's events are only at risk once a later transaction
-- id has ended (another session's commit, or as here a savepoint rolled
-- back): the snapshot's xmax is then above the own id, and a snapshot
-- counts its own transaction as committed.
CREATE DATABASE pc_feed_own IS_TEMPLATE true;
\c pc_feed_own
SET client_min_messages = warning;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
\set VERBOSITY terse
\set u '''16161616-1616-1616-1616-161616161616'''
\set p '''aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa'''
SELECT count(*) AS workers FROM pg_stat_activity
 WHERE datname = current_database() AND backend_type = 'provider_connections worker';
BEGIN;
SELECT ok FROM provider_begin_connect(:u, :p, 'own-first-round');
SAVEPOINT s;
SELECT ok FROM provider_begin_connect(:u, :p, 'undone');
ROLLBACK TO SAVEPOINT s;
SELECT count(*) FILTER (WHERE provider_slug LIKE 'own-%') AS own_events_read, count(*) AS read
  FROM provider_events_since(0);
SELECT provider_feed_head() AS head;
ROLLBACK;
SELECT count(*) AS positions FROM provider_event_positions;
SELECT ok FROM provider_begin_connect(:u, :p, 'committed');
SELECT provider_feed_head() AS head_covers_the_committed_call;
BEGIN;
SELECT ok FROM provider_begin_connect(:u, :p, 'own-later-round');
SAVEPOINT s;
SELECT ok FROM provider_begin_connect(:u, :p, 'undone');
ROLLBACK TO SAVEPOINT s;
SELECT count(*) FILTER (WHERE provider_slug LIKE 'own-%') AS own_events_read, count(*) AS read
  FROM provider_events_since(0);
SELECT provider_feed_head() AS head;
ROLLBACK;
SELECT count(*) AS positions, max(global_position) AS head FROM provider_event_positions;
BEGIN;
SELECT ok FROM provider_begin_connect(:u, :p, 'own-committed');
SAVEPOINT s;
SELECT ok FROM provider_begin_connect(:u, :p, 'undone');
ROLLBACK TO SAVEPOINT s;
SELECT count(*) FILTER (WHERE provider_slug LIKE 'own-%') AS own_events_read, count(*) AS read
  FROM provider_events_since(0);
COMMIT;
SELECT global_position, provider_slug, event_type FROM provider_events_since(0);
\c contrib_regression
ALTER DATABASE pc_feed_own IS_TEMPLATE false;
DROP DATABASE pc_feed_own;
