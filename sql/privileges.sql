-- Least privilege: the grants README.md documents for an application role
-- and a worker role, and what each can and cannot do. Then a hostile caller
-- who plants look-alike objects on its search_path.
-- A fresh install of its own, so that this file runs in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
\set VERBOSITY terse
-- The key: the server's own (provider_connections.encryption_key_file in
-- postgresql.conf; the key settings cannot be set per session).
SET provider_connections.test_clock = '2026-01-06 00:00:00+00';

-- The README's grants (Security model), with its role names prefixed.
CREATE ROLE pc_app;
CREATE ROLE pc_worker IN ROLE pc_app;
CREATE ROLE pc_maintenance;
GRANT EXECUTE ON FUNCTION provider_connect(uuid, uuid, text, bytea, text, timestamptz, text, uuid),
                          provider_begin_connect(uuid, uuid, text, text, text),
                          provider_disconnect(uuid, uuid),
                          provider_refresh_tokens(uuid, bytea, timestamptz, text, uuid),
                          provider_mark_failed(uuid, text),
                          provider_record_sync(uuid) TO pc_app;
GRANT SELECT ON provider_connections_overview TO pc_app;
GRANT SELECT ON provider_audit_log TO pc_app;
GRANT EXECUTE ON FUNCTION provider_events_since(bigint, integer, boolean) TO pc_app;
GRANT EXECUTE ON FUNCTION provider_credentials(uuid),
                          provider_claim_expiring(interval, integer, interval),
                          provider_mark_expired(uuid, uuid),
                          provider_mark_revoked(uuid, text, uuid),
                          provider_renew_lease(uuid, uuid, interval),
                          provider_release_lease(uuid, uuid),
                          provider_record_refresh_failure(uuid, uuid, text, interval) TO pc_worker;
CREATE ROLE pc_mailer;
GRANT USAGE ON SCHEMA public TO pc_mailer;
GRANT EXECUTE ON FUNCTION provider_events_since(bigint, integer, boolean), provider_feed_head() TO pc_mailer;
GRANT EXECUTE ON FUNCTION provider_expire_overdue(interval),
                          provider_fail_abandoned(interval),
                          provider_purge_events(timestamptz, bigint) TO pc_maintenance;

-- Nothing of the extension is PUBLIC's but the harmless helpers the
-- overview and the table's CHECK run.
SELECT p.proname FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'provider%'
   AND has_function_privilege('public', p.oid, 'EXECUTE') ORDER BY 1;

-- Before any grant, a role can call nothing.
CREATE ROLE pc_nobody;
SET ROLE pc_nobody;
SELECT ok FROM provider_connect('99999999-0000-0000-0000-000000000001',
    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');
SELECT count(*) FROM provider_connections;
RESET ROLE;

-- The application role: the commands work and are recorded as its own.
SET ROLE pc_app;
SELECT (provider_connect('99999999-0000-0000-0000-000000000001',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x6170702d736563726574')).connection_id AS app_conn \gset
SELECT ok FROM provider_refresh_tokens(:'app_conn', '\x6170702d736563726574');
SELECT status, credential_type, is_connected, supports_refresh FROM provider_connections_overview WHERE id = :'app_conn';
SELECT context->>'current_user' AS recorded_as FROM provider_audit_log ORDER BY id DESC LIMIT 1;
SELECT count(*) > 0 AS reads_feed FROM provider_events_since(0, 10);
-- ...but it cannot read sealed credentials, open them, or write the tables.
SELECT encrypted_credentials FROM provider_connections WHERE id = :'app_conn';
SELECT provider_credentials(:'app_conn');
UPDATE provider_connections SET status = 'disconnected', encrypted_credentials = NULL WHERE id = :'app_conn';
INSERT INTO provider_connections (id, user_id, provider_id, provider_slug, status, created_at, updated_at)
VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'x', 'pending', now(), now());
DELETE FROM provider_connections;
UPDATE provider_audit_log SET reason = 'x';
DELETE FROM provider_audit_log;
INSERT INTO provider_audit_log (event_id, event_type, action, occurred_at, context)
VALUES (gen_random_uuid(), 'Forged', 'forged', now(), '{}');
SELECT * FROM provider_rotate_credentials();
-- By SQLSTATE: the wording of this refusal changed in PostgreSQL 16.
\set VERBOSITY sqlstate
SHOW provider_connections.encryption_key_file;
\set VERBOSITY terse
RESET ROLE;

-- The consumer role reads the feed and its head, and nothing else.
SET ROLE pc_mailer;
SELECT count(*) > 0 AS reads_feed, provider_feed_head() > 0 AS has_head FROM provider_events_since(0, 10);
SELECT count(*) FROM provider_audit_log;
SELECT count(*) FROM provider_connections_overview;
SELECT ok FROM provider_record_sync(:'app_conn');
RESET ROLE;

-- The application cannot claim, hold leases or count failures, nor run the
-- maintenance jobs.
SET ROLE pc_app;
SELECT * FROM provider_claim_expiring();
SELECT provider_renew_lease(:'app_conn', gen_random_uuid(), '1 minute');
SELECT provider_release_lease(:'app_conn', gen_random_uuid());
SELECT ok FROM provider_record_refresh_failure(:'app_conn', NULL, 'timeout');
SELECT provider_fail_abandoned();
RESET ROLE;

-- The worker role: also the plain credentials, claims with their leases,
-- failures, marks; not the maintenance jobs.
UPDATE provider_connections SET credentials_expires_at = '2026-01-06 00:01:00+00' WHERE id = :'app_conn';
SET ROLE pc_worker;
SELECT provider_credentials(:'app_conn') AS opened;
SELECT lease_token AS token FROM provider_claim_expiring('100 years', 1, '1 minute') \gset
SELECT provider_renew_lease(:'app_conn', :'token', '2 minutes') > now() AS renewed;
SELECT provider_release_lease(:'app_conn', :'token') AS released;
SELECT ok, error_code FROM provider_record_refresh_failure(:'app_conn', NULL, 'timeout');
SELECT provider_fail_abandoned();
RESET ROLE;

-- The maintenance role runs the jobs, and nothing else.
SET ROLE pc_maintenance;
SELECT provider_fail_abandoned('1 hour') AS failed, provider_expire_overdue('1 hour') AS expired;
SELECT * FROM provider_claim_expiring();
RESET ROLE;

-- A hostile caller plants look-alikes of everything the functions use:
-- tables, an always-true uuid "=", nextval, and a pgcrypto stand-in that
-- would steal the key. The functions use none of them.
CREATE SCHEMA evil AUTHORIZATION pc_app;
SET ROLE pc_app;
CREATE TABLE evil.stolen (what text);
CREATE TABLE evil.provider_audit_log (id bigint, event_id uuid, event_type text);
CREATE TABLE evil.provider_connections (id uuid, user_id uuid, status text);
CREATE FUNCTION evil.always_equal(uuid, uuid) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.always_equal);
CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint';
CREATE FUNCTION evil.pgp_sym_encrypt_bytea(bytea, text, text) RETURNS bytea LANGUAGE sql
    AS $$ INSERT INTO evil.stolen VALUES ($2) RETURNING $1 $$;
CREATE FUNCTION evil.substring(bytea, integer, integer) RETURNS bytea LANGUAGE sql
    AS $$ INSERT INTO evil.stolen VALUES ('substring') RETURNING $1 $$;
CREATE TEMP TABLE provider_connections (id uuid, user_id uuid, status text);
SET search_path = evil, pg_temp, public;
SELECT (provider_connect('99999999-0000-0000-0000-000000000001',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')).ok AS connected;
-- With an always-true "=", another user's connection would look owned.
SELECT ok, error_code FROM provider_disconnect('99999999-0000-0000-0000-000000000002', :'app_conn');
SELECT ok FROM provider_refresh_tokens(:'app_conn', '\x02');
SELECT (SELECT count(*) FROM evil.stolen) AS stolen,
       (SELECT count(*) FROM evil.provider_audit_log) AS decoy_audit,
       (SELECT count(*) FROM evil.provider_connections) AS decoy_connections,
       (SELECT count(*) FROM pg_temp.provider_connections) AS temp_connections;
RESET search_path;
RESET ROLE;
-- (The temp table still shadows public's for this session: name it.)
SELECT status FROM public.provider_connections WHERE id = :'app_conn';

DROP SCHEMA evil CASCADE;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM pc_app, pc_worker, pc_maintenance, pc_mailer;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM pc_app, pc_worker, pc_maintenance, pc_mailer;
DROP OWNED BY pc_app, pc_worker, pc_nobody, pc_maintenance, pc_mailer;
DROP ROLE pc_worker, pc_app, pc_nobody, pc_maintenance, pc_mailer;
