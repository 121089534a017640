/*
 * bench/check_reference.sql
 *
 * Keeps the PL/pgSQL reference honest: the same calls go through the
 * extension and through plref, and their results and audit rows must agree
 * (ids and times aside), as must the status trigger's verdict on every
 * transition and the database_error a failing user trigger causes. A
 * reference that drifted from the contract (a check skipped, an event not
 * written) would make the benchmark compare different work.
 *
 * bench/run.sh runs it before seeding, in one transaction that it rolls
 * back, and stops if the last line is not "reference differences: 0"; the
 * differences are printed above it.
 */
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only on
BEGIN;

CREATE TEMP TABLE check_ids (impl text, name text, id uuid);
CREATE TEMP TABLE check_calls (n serial, sql text);
CREATE TEMP TABLE check_got (n int, impl text, result text, events text);
CREATE TEMP TABLE check_differences (what text);

/* A live and a disconnected connection in each implementation. */
DO $$
DECLARE
    impl text;
    r    record;
BEGIN
    FOREACH impl IN ARRAY ARRAY['', 'plref.'] LOOP
        EXECUTE format($q$SELECT * FROM %sprovider_connect('11111111-1111-1111-1111-111111111111',
                          'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')$q$, impl) INTO r;
        INSERT INTO check_ids VALUES (impl, 'live', r.connection_id);
        EXECUTE format($q$SELECT * FROM %sprovider_connect('11111111-1111-1111-1111-111111111111',
                          'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')$q$, impl) INTO r;
        INSERT INTO check_ids VALUES (impl, 'dead', r.connection_id);
        EXECUTE format($q$SELECT * FROM %sprovider_disconnect('11111111-1111-1111-1111-111111111111', %L)$q$,
                       impl, r.connection_id) INTO r;
    END LOOP;
END
$$;

/* %s is the implementation's schema prefix; {live} and {dead} its connections. */
INSERT INTO check_calls (sql) VALUES
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa','schwab','\x01','api_key', now() + interval '1 day', 'My alias')$$),
 ($$%sprovider_connect(NULL,'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa','schwab','\x01')$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111',NULL,'schwab','\x01')$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa','schwab',NULL)$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa','','')$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa','schwab',convert_to(repeat('x', 1048577), 'UTF8'))$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',NULL,'\x01')$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa','','\x01')$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',repeat('é', 51),'\x01')$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',repeat('é', 300),'\x01')$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',repeat('é', 50),'\x01')$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa','schwab','\x01','bogus')$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa','schwab','\x01',NULL)$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa','schwab','\x01','oauth2',NULL,repeat('a',101))$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa','schwab','\x01','oauth2','-infinity')$$),
 ($$%sprovider_connect('11111111-1111-1111-1111-111111111111','aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa','schwab','\x01','oauth2','infinity')$$),
 ($$%sprovider_disconnect(NULL, {live})$$),
 ($$%sprovider_disconnect('11111111-1111-1111-1111-111111111111', NULL)$$),
 ($$%sprovider_disconnect(NULL, NULL)$$),
 ($$%sprovider_disconnect('11111111-1111-1111-1111-111111111111', '00000000-0000-0000-0000-000000000000')$$),
 ($$%sprovider_disconnect('22222222-2222-2222-2222-222222222222', {live})$$),
 ($$%sprovider_disconnect('11111111-1111-1111-1111-111111111111', {dead})$$),
 ($$%sprovider_refresh_tokens(NULL, '\x02')$$),
 ($$%sprovider_refresh_tokens('00000000-0000-0000-0000-000000000000', '\x02')$$),
 ($$%sprovider_refresh_tokens({live}, NULL)$$),
 ($$%sprovider_refresh_tokens({live}, '')$$),
 ($$%sprovider_refresh_tokens({live}, '\x02', NULL, 'bogus')$$),
 ($$%sprovider_refresh_tokens({live}, '\x02', '-infinity')$$),
 ($$%sprovider_refresh_tokens({dead}, '\x02')$$),
 ($$%sprovider_refresh_tokens({dead}, NULL)$$),
 ($$%sprovider_refresh_tokens({live}, '\x02', now() + interval '1 hour', 'api_key')$$),
 ($$%sprovider_refresh_tokens({live}, '\x03')$$),
 ($$%sprovider_disconnect('11111111-1111-1111-1111-111111111111', {live})$$),
 ($$%sprovider_refresh_tokens({live}, '\x02')$$);

/* Each call through both; its result and the audit rows it wrote. */
DO $$
DECLARE
    c      record;
    v_impl text;
    v_sql  text;
    v_res  text;
    v_ev   text;
    v_tbl  text;
    v_mark bigint;
BEGIN
    FOR c IN SELECT * FROM check_calls ORDER BY n LOOP
        FOREACH v_impl IN ARRAY ARRAY['', 'plref.'] LOOP
            v_tbl := CASE v_impl WHEN '' THEN 'public' ELSE 'plref' END || '.provider_audit_log';
            EXECUTE format('SELECT coalesce(max(id), 0) FROM %s', v_tbl) INTO v_mark;
            v_sql := replace(replace(format(c.sql, v_impl),
                '{live}', quote_nullable((SELECT id FROM check_ids i WHERE i.impl = v_impl AND i.name = 'live'))),
                '{dead}', quote_nullable((SELECT id FROM check_ids i WHERE i.impl = v_impl AND i.name = 'dead')));
            EXECUTE 'SELECT row(r.ok, r.connection_id IS NOT NULL, r.error_code, r.error)::text FROM '
                    || v_sql || ' r' INTO v_res;
            -- From 1.4 the extension stores "no user" as the nil UUID (its
            -- key holds user_id): compared as the NULL it stands for.
            EXECUTE format($f$SELECT string_agg(concat_ws('|', event_type, action,
                                  NULLIF(user_id, '00000000-0000-0000-0000-000000000000'),
                                  connection_id IS NOT NULL, provider_id, provider_slug, reason,
                                  needs_user_action, context ? 'current_user',
                                  context->>'session_user', context ? 'transaction_id'),
                              E'\n' ORDER BY id)
                                 FROM %s WHERE id > %s$f$, v_tbl, v_mark) INTO v_ev;
            INSERT INTO check_got VALUES (c.n, v_impl, v_res, v_ev);
        END LOOP;
    END LOOP;
END
$$;

INSERT INTO check_differences
SELECT format('call %s: %s', e.n, (SELECT sql FROM check_calls WHERE n = e.n))
       || format(E'\n  extension: %s\n  plref:     %s', e.result, p.result)
       || CASE WHEN e.events IS DISTINCT FROM p.events
               THEN format(E'\n  extension events:\n%s\n  plref events:\n%s', e.events, p.events) ELSE '' END
  FROM check_got e JOIN check_got p ON p.n = e.n AND e.impl = '' AND p.impl = 'plref.'
 WHERE e.result IS DISTINCT FROM p.result OR e.events IS DISTINCT FROM p.events;

/* A user trigger that fails: database_error with the same message. */
CREATE FUNCTION pg_temp.check_boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'boom %', TG_OP;
END
$$;
CREATE TRIGGER check_boom BEFORE INSERT ON public.provider_connections
    FOR EACH ROW EXECUTE FUNCTION pg_temp.check_boom();
CREATE TRIGGER check_boom BEFORE INSERT ON plref.provider_connections
    FOR EACH ROW EXECUTE FUNCTION pg_temp.check_boom();
INSERT INTO check_differences
SELECT format(E'failing trigger:\n  extension: %s\n  plref:     %s', e, p)
  FROM (SELECT row(ok, connection_id, error_code, error)::text
          FROM provider_connect('11111111-1111-1111-1111-111111111111',
                                'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')) AS x(e),
       (SELECT row(ok, connection_id, error_code, error)::text
          FROM plref.provider_connect('11111111-1111-1111-1111-111111111111',
                                      'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')) AS y(p)
 WHERE e IS DISTINCT FROM p;
DROP TRIGGER check_boom ON public.provider_connections;
DROP TRIGGER check_boom ON plref.provider_connections;

/* Every status transition by a direct UPDATE: the same verdict (SQLSTATE). */
DO $$
DECLARE
    v_impl text;
    v_from text;
    v_to   text;
    v_id   uuid;
    v_got  text[] := '{}';
    v_out  text;
    statuses text[] := ARRAY['pending', 'active', 'expired', 'revoked', 'failed', 'disconnected'];
BEGIN
    FOREACH v_from IN ARRAY statuses LOOP
        FOREACH v_to IN ARRAY statuses LOOP
            v_got := '{}';
            FOREACH v_impl IN ARRAY ARRAY['public', 'plref'] LOOP
                BEGIN
                    v_id := gen_random_uuid();
                    -- (header-bearing bytes: the extension refuses others in encrypted_credentials)
                    SET LOCAL session_replication_role = replica;     -- insert any status
                    EXECUTE format($q$INSERT INTO %I.provider_connections
                                       (id, user_id, provider_id, provider_slug, status, credential_type,
                                        encrypted_credentials, created_at, updated_at)
                                     VALUES ($1, $1, $1, 'x', %L,
                                             CASE WHEN %L = 'disconnected' THEN NULL ELSE 'oauth2' END,
                                             CASE WHEN %L = 'disconnected' THEN NULL ELSE '\x504301000000000f'::bytea END,
                                             now(), now())$q$, v_impl, v_from, v_from, v_from) USING v_id;
                    SET LOCAL session_replication_role = origin;
                    EXECUTE format($q$UPDATE %I.provider_connections
                                         SET status = %L,
                                             credential_type = CASE WHEN %L = 'disconnected' THEN NULL ELSE 'oauth2' END,
                                             encrypted_credentials = CASE WHEN %L = 'disconnected' THEN NULL ELSE '\x504301000000000f'::bytea END
                                       WHERE id = $1$q$, v_impl, v_to, v_to, v_to) USING v_id;
                    v_out := 'allowed';
                    RAISE EXCEPTION 'check_rollback';
                EXCEPTION WHEN OTHERS THEN
                    IF SQLERRM <> 'check_rollback' THEN
                        v_out := 'refused ' || SQLSTATE;
                    END IF;
                END;
                SET LOCAL session_replication_role = origin;
                v_got := v_got || v_out;
            END LOOP;
            IF v_got[1] IS DISTINCT FROM v_got[2] THEN
                INSERT INTO check_differences
                VALUES (format('status %s -> %s: extension %s, plref %s', v_from, v_to, v_got[1], v_got[2]));
            END IF;
        END LOOP;
    END LOOP;
END
$$;

SELECT what FROM check_differences;
SELECT 'reference differences: ' || count(*) FROM check_differences;
ROLLBACK;
