-- The upgrade path, in a database of its own: a database holding 1.0 data
-- is updated with ALTER EXTENSION to the current version; its data
-- survives, every old event gets a position, and the result is the same as
-- a fresh install from the full install script, object by object and
-- definition by definition (columns, defaults, indexes, constraints,
-- triggers, function bodies and settings, grants, comments).
\set VERBOSITY terse
CREATE DATABASE pc_upgrade;
\c pc_upgrade
-- The key: the server's own (provider_connections.encryption_key_file in
-- postgresql.conf; the key settings cannot be set per session).

-- Every member of the extension with what defines it.
CREATE FUNCTION extension_shape() RETURNS TABLE (object text, definition text)
LANGUAGE sql AS $$
    WITH members AS (
        SELECT classid, objid FROM pg_depend
         WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
           AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'provider_connections')
           -- From PostgreSQL 17 on, tables' row types and array types are
           -- members too; they follow from the tables and types listed.
           AND NOT EXISTS (SELECT 1 FROM pg_type t
                            WHERE classid = 'pg_type'::regclass AND t.oid = objid
                              AND (t.typcategory = 'A'
                                   OR t.typrelid IN (SELECT oid FROM pg_class WHERE relkind <> 'c'))))
    SELECT pg_describe_object(m.classid, m.objid, 0),
           concat_ws(' | ',
               CASE WHEN m.classid = 'pg_proc'::regclass THEN
                   (SELECT pg_get_functiondef(p.oid) || ' acl=' || coalesce(p.proacl::text, '')
                      FROM pg_proc p WHERE p.oid = m.objid AND p.prokind <> 'a') END,
               CASE WHEN m.classid = 'pg_class'::regclass THEN
                   (SELECT c.relkind::text || ' acl=' || coalesce(c.relacl::text, '') || ' ' ||
                           coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                                || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                                                || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
                                                || coalesce(' -- ' || col_description(c.oid, a.attnum), ''),
                                             ', ' ORDER BY a.attnum)
                                       FROM pg_attribute a
                                       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
                      FROM pg_class c WHERE c.oid = m.objid) END,
               CASE WHEN m.classid = 'pg_class'::regclass THEN
                   (SELECT string_agg(pg_get_indexdef(i.indexrelid), '; ' ORDER BY pg_get_indexdef(i.indexrelid))
                      FROM pg_index i WHERE i.indrelid = m.objid) END,
               CASE WHEN m.classid = 'pg_class'::regclass THEN
                   (SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), '; ' ORDER BY conname)
                      FROM pg_constraint WHERE conrelid = m.objid) END,
               CASE WHEN m.classid = 'pg_class'::regclass THEN
                   (SELECT string_agg(pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text, '; ' ORDER BY t.tgname)
                      FROM pg_trigger t WHERE t.tgrelid = m.objid AND NOT t.tgisinternal) END,
               CASE WHEN m.classid = 'pg_type'::regclass THEN
                   (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                      FROM pg_enum e WHERE e.enumtypid = m.objid) END,
               'comment=' || coalesce(obj_description(m.objid, m.classid::regclass::text), ''))
      FROM members m
$$;

-- The fresh install of the current version (the 1.3 script, then 1.3--1.4).
CREATE EXTENSION provider_connections CASCADE;
SELECT extversion FROM pg_extension WHERE extname = 'provider_connections';
CREATE TABLE fresh_shape AS SELECT * FROM extension_shape();
SELECT count(*) AS members, count(*) FILTER (WHERE definition LIKE '%comment=_%') AS described FROM fresh_shape;
DROP EXTENSION provider_connections;

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

-- The same objects, defined the same way, as the fresh install.
SELECT object AS missing_or_different_after_update, definition FROM fresh_shape
EXCEPT SELECT * FROM extension_shape();
SELECT object AS extra_or_different_after_update, definition FROM extension_shape()
EXCEPT SELECT * FROM fresh_shape;

-- From 1.2, with grants an application gave: provider_connect gains its
-- eighth argument (a new function), and the grants carry over to it, as
-- the role's own (pg_dump keeps dumping them: the extension's initial
-- privileges are a fresh install's).
DROP EXTENSION provider_connections;
CREATE EXTENSION provider_connections VERSION '1.2';
SELECT initprivs::text AS fresh_initprivs FROM pg_init_privs
 WHERE objoid = 'provider_disconnect(uuid, uuid)'::regprocedure \gset
CREATE ROLE pc_upgrade_app;
CREATE ROLE pc_upgrade_admin;
GRANT EXECUTE ON FUNCTION provider_connect(uuid, uuid, text, bytea, text, timestamptz, text) TO pc_upgrade_app;
GRANT EXECUTE ON FUNCTION provider_connect(uuid, uuid, text, bytea, text, timestamptz, text) TO pc_upgrade_admin WITH GRANT OPTION;
ALTER EXTENSION provider_connections UPDATE TO '1.3';
SELECT has_function_privilege('pc_upgrade_app', 'provider_connect(uuid, uuid, text, bytea, text, timestamptz, text, uuid)', 'EXECUTE') AS app_granted,
       has_function_privilege('pc_upgrade_admin', 'provider_connect(uuid, uuid, text, bytea, text, timestamptz, text, uuid)', 'EXECUTE WITH GRANT OPTION') AS admin_grant_option,
       has_function_privilege('public', 'provider_connect(uuid, uuid, text, bytea, text, timestamptz, text, uuid)', 'EXECUTE') AS public_granted,
       (SELECT initprivs::text FROM pg_init_privs
         WHERE objoid = 'provider_connect(uuid, uuid, text, bytea, text, timestamptz, text, uuid)'::regprocedure)
           = :'fresh_initprivs' AS initprivs_as_fresh;
-- Calls written for 7 arguments work as before; named connection_id too.
SET ROLE pc_upgrade_app;
SELECT ok FROM provider_connect('15151515-1515-1515-1515-151515151515',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01', 'oauth2', NULL, 'after 1.3');
SELECT ok, error_code FROM provider_connect('15151515-1515-1515-1515-151515151515',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01', connection_id => '00000000-0000-0000-0000-000000000000');
RESET ROLE;
DROP EXTENSION provider_connections;
DROP ROLE pc_upgrade_app;
DROP ROLE pc_upgrade_admin;

-- From 1.3, with a consumer's grant: provider_events_since gains its third
-- argument, skip_purged (a new function), and the grant carries over the
-- same way; calls written for 1.3 work unchanged.
CREATE EXTENSION provider_connections VERSION '1.3';
CREATE ROLE pc_upgrade_mailer;
GRANT EXECUTE ON FUNCTION provider_events_since(bigint, integer) TO pc_upgrade_mailer;
-- A role whose name must be quoted keeps its grant too.
CREATE ROLE "Pc Upgrade Reader";
GRANT EXECUTE ON FUNCTION provider_events_since(bigint, integer) TO "Pc Upgrade Reader";
-- A refresh worker's grants: the functions that gain lease_token, and the
-- claim, whose result gains columns, are replaced the same way.
CREATE ROLE pc_upgrade_worker;
GRANT EXECUTE ON FUNCTION provider_refresh_tokens(uuid, bytea, timestamptz, text),
                          provider_mark_expired(uuid),
                          provider_claim_expiring(interval, integer, interval) TO pc_upgrade_worker;
GRANT EXECUTE ON FUNCTION provider_mark_revoked(uuid, text) TO pc_upgrade_worker WITH GRANT OPTION;
ALTER EXTENSION provider_connections UPDATE TO '1.4';
SELECT f AS function,
       has_function_privilege('pc_upgrade_worker', f, 'EXECUTE') AS worker_granted,
       has_function_privilege('pc_upgrade_worker', f, 'EXECUTE WITH GRANT OPTION') AS grant_option,
       has_function_privilege('public', f, 'EXECUTE') AS public_granted,
       (SELECT initprivs::text FROM pg_init_privs WHERE objoid = f::regprocedure) = :'fresh_initprivs' AS initprivs_as_fresh
  FROM unnest('{"provider_refresh_tokens(uuid, bytea, timestamptz, text, uuid)",
                "provider_mark_expired(uuid, uuid)",
                "provider_mark_revoked(uuid, text, uuid)",
                "provider_claim_expiring(interval, integer, interval)"}'::text[]) f;
SELECT has_function_privilege('pc_upgrade_mailer', 'provider_events_since(bigint, integer, boolean)', 'EXECUTE') AS mailer_granted,
       has_function_privilege('Pc Upgrade Reader', 'provider_events_since(bigint, integer, boolean)', 'EXECUTE') AS quoted_role_granted,
       has_function_privilege('public', 'provider_events_since(bigint, integer, boolean)', 'EXECUTE') AS public_granted,
       (SELECT initprivs::text FROM pg_init_privs
         WHERE objoid = 'provider_events_since(bigint, integer, boolean)'::regprocedure)
           = :'fresh_initprivs' AS initprivs_as_fresh;
SET ROLE pc_upgrade_mailer;
SELECT count(*) AS read_as_in_1_3 FROM provider_events_since(0, 10);
SELECT count(*) AS read_skipping FROM provider_events_since(0, skip_purged => true);
RESET ROLE;
-- The worker's calls written for 1.3 work unchanged.
SET ROLE pc_upgrade_worker;
SELECT ok, error_code FROM provider_refresh_tokens('00000000-0000-0000-0000-000000000000', '\x01');
SELECT ok, error_code FROM provider_mark_revoked('00000000-0000-0000-0000-000000000000', 'invalid_grant');
SELECT count(*) AS claimed FROM provider_claim_expiring('5 minutes', 10, '1 minute');
RESET ROLE;
DROP EXTENSION provider_connections;
DROP ROLE pc_upgrade_mailer;
DROP ROLE "Pc Upgrade Reader";
DROP ROLE pc_upgrade_worker;

-- From 1.1, whose audit rows have no xid: rows this library wrote there
-- are numbered by the first round after the update, like the older ones.
CREATE EXTENSION provider_connections VERSION '1.1';
SELECT ok FROM provider_connect('17171717-1717-1717-1717-171717171717',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');
ALTER EXTENSION provider_connections UPDATE;
SELECT count(*) AS audit_rows, count(*) FILTER (WHERE xid IS NULL) AS without_xid FROM provider_audit_log;
SELECT count(*) AS in_the_feed FROM provider_events_since(0);
DROP EXTENSION provider_connections;

\c contrib_regression
DROP DATABASE pc_upgrade;

-- 1.4 changes the keys: a user's foreign key on the old ones stops the
-- update before anything changed, saying what to do.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections VERSION '1.3' CASCADE;
RESET client_min_messages;
CREATE TABLE app_sync_jobs (connection_id uuid REFERENCES provider_connections (id));
-- The hint, without the context lines (PostgreSQL 18 adds the script's text).
\set VERBOSITY default
\set SHOW_CONTEXT never
ALTER EXTENSION provider_connections UPDATE TO '1.4';
\set SHOW_CONTEXT errors
\set VERBOSITY terse
SELECT extversion FROM pg_extension WHERE extname = 'provider_connections';
DROP TABLE app_sync_jobs;
ALTER EXTENSION provider_connections UPDATE TO '1.4';
SELECT extversion FROM pg_extension WHERE extname = 'provider_connections';
-- The hint's advice holds: the key is (id, user_id), in that order, so a
-- foreign key on both goes through and a lookup by id alone uses the key.
CREATE TABLE app_sync_jobs (connection_id uuid, user_id uuid,
    FOREIGN KEY (connection_id, user_id) REFERENCES provider_connections (id, user_id));
DROP TABLE app_sync_jobs;
SELECT pg_get_indexdef(i) FROM unnest(ARRAY['provider_connections_pkey'::regclass,
    'provider_audit_log_pkey', 'provider_audit_log_event_id_key', 'provider_event_positions_pkey']) i;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT status FROM provider_connections WHERE id = '01890a5d-ac96-774b-bcce-b302099a8057';
EXPLAIN (COSTS OFF) SELECT event_type FROM provider_audit_log WHERE id = 1;
EXPLAIN (COSTS OFF) SELECT global_position FROM provider_event_positions WHERE audit_id = 1;
RESET enable_seqscan;
RESET enable_bitmapscan;
