-- The upgrade path: a database holding 1.0 data is updated to 1.1 with
-- ALTER EXTENSION; its data survives, every old event gets a position, and
-- the result is the same set of objects as a fresh 1.1 install.
\set VERBOSITY terse
-- This suite's own key files, written by the server into its data directory
-- (relative key paths are relative to it), readable by the server only.
COPY (SELECT 'regress-key-0123456789abcdef-0123456789') TO PROGRAM 'cat > pc_regress.key && chmod 600 pc_regress.key';
SET provider_connections.encryption_key_file = 'pc_regress.key';

CREATE TEMP TABLE fresh_objects AS
SELECT pg_describe_object(classid, objid, 0) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'provider_connections');

DROP EXTENSION provider_connections CASCADE;
CREATE EXTENSION provider_connections VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'provider_connections';

SELECT (provider_connect('14141414-1414-1414-1414-141414141414',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x6f6c642d312e30')).connection_id AS old \gset
SELECT ok FROM provider_connect('14141414-1414-1414-1414-141414141414',
    'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', 'chase', '\x01');
SELECT ok FROM provider_disconnect('14141414-1414-1414-1414-141414141414', :'old');
SELECT ok FROM provider_connect(NULL, NULL, NULL, NULL);

ALTER EXTENSION provider_connections UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'provider_connections';

-- Data kept; old events numbered in id order.
SELECT count(*) AS connections, count(*) FILTER (WHERE status = 'active') AS active
  FROM provider_connections;
SELECT provider_credentials(id) FROM provider_connections WHERE provider_slug = 'chase';
SELECT global_position, audit_id, event_type FROM provider_events_since(0) ORDER BY 1;

-- New calls continue the feed.
SELECT ok FROM provider_refresh_tokens((SELECT id FROM provider_connections WHERE provider_slug = 'chase'), '\x02');
SELECT global_position, audit_id, event_type FROM provider_events_since(8) ORDER BY 1;

-- Same objects as a fresh install.
SELECT object AS missing_after_update FROM fresh_objects
EXCEPT SELECT pg_describe_object(classid, objid, 0) FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'provider_connections');
SELECT pg_describe_object(classid, objid, 0) AS extra_after_update FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'provider_connections')
EXCEPT SELECT object FROM fresh_objects;
