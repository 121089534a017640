-- The status state machine on direct writes: the trigger applies the same
-- transition table as the functions to every INSERT and UPDATE.
-- A fresh install of its own, so that this file runs in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
CREATE EXTENSION provider_connections CASCADE;
RESET client_min_messages;
\set VERBOSITY terse
-- Direct writes below store bytes with the seal's header (the guard refuses
-- any other bytes in encrypted_credentials); nothing here opens them.

-- A row brought to status "from" through legal steps, then one UPDATE to
-- "to" in a subtransaction: 'ok' or the SQLSTATE it was refused with.
CREATE FUNCTION try_transition(from_status provider_connection_status,
                               to_status provider_connection_status)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    conn uuid := gen_random_uuid();
    path provider_connection_status[] := CASE from_status
        WHEN 'pending' THEN '{}'
        WHEN 'active' THEN '{active}'
        WHEN 'expired' THEN '{active,expired}'
        WHEN 'revoked' THEN '{active,revoked}'
        WHEN 'failed' THEN '{failed}'
        WHEN 'disconnected' THEN '{disconnected}' END;
    step provider_connection_status;
BEGIN
    INSERT INTO provider_connections (id, user_id, provider_id, provider_slug, status,
                                      encrypted_credentials, created_at, updated_at)
    VALUES (conn, gen_random_uuid(), gen_random_uuid(), 'matrix', 'pending', '\x504301000000000f', now(), now());
    FOREACH step IN ARRAY path LOOP
        UPDATE provider_connections
           SET status = step,
               encrypted_credentials = CASE WHEN step = 'disconnected' THEN NULL ELSE '\x504301000000000f'::bytea END
         WHERE id = conn;
    END LOOP;
    BEGIN
        UPDATE provider_connections
           SET status = to_status,
               encrypted_credentials = CASE WHEN to_status = 'disconnected' THEN NULL ELSE '\x504301000000000f'::bytea END
         WHERE id = conn;
        RETURN 'ok';
    EXCEPTION WHEN others THEN
        RETURN SQLSTATE;
    END;
END $$;

-- The full 6x6 matrix; rows are "from", columns "to". The diagonal keeps the
-- status and is not a transition.
SELECT f AS "from",
       try_transition(f, 'pending') AS pending,
       try_transition(f, 'active') AS active,
       try_transition(f, 'expired') AS expired,
       try_transition(f, 'revoked') AS revoked,
       try_transition(f, 'failed') AS failed,
       try_transition(f, 'disconnected') AS disconnected
  FROM unnest(enum_range(NULL::provider_connection_status)) AS f;

-- The error names both states.
INSERT INTO provider_connections (id, user_id, provider_id, provider_slug, status,
                                  encrypted_credentials, created_at, updated_at)
VALUES ('5a000000-0000-7000-8000-000000000001', '55555555-5555-5555-5555-555555555555',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', 'active', '\x504301000000000f', now(), now());
UPDATE provider_connections SET status = 'pending'
 WHERE id = '5a000000-0000-7000-8000-000000000001';
\set VERBOSITY default
UPDATE provider_connections SET status = 'active', encrypted_credentials = '\x504301000000000f'
 WHERE id = (SELECT id FROM provider_connections WHERE status = 'disconnected' LIMIT 1);
\set VERBOSITY terse

-- Invariants: an active row holds credentials; a disconnected row holds none.
UPDATE provider_connections SET encrypted_credentials = NULL
 WHERE id = '5a000000-0000-7000-8000-000000000001';
UPDATE provider_connections SET status = 'disconnected'
 WHERE id = '5a000000-0000-7000-8000-000000000001';
INSERT INTO provider_connections (id, user_id, provider_id, provider_slug, status,
                                  created_at, updated_at)
VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'x', 'active', now(), now());

-- New rows start pending or active.
INSERT INTO provider_connections (id, user_id, provider_id, provider_slug, status,
                                  created_at, updated_at)
VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'x', 'expired', now(), now());
INSERT INTO provider_connections (id, user_id, provider_id, provider_slug, status,
                                  created_at, updated_at)
VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'x', 'disconnected', now(), now());

-- Updates that keep the status are not transitions.
UPDATE provider_connections SET alias = 'renamed', last_sync_at = now()
 WHERE id = '5a000000-0000-7000-8000-000000000001';
SELECT status, alias FROM provider_connections WHERE id = '5a000000-0000-7000-8000-000000000001';

-- A connection's identity cannot change: ownership checks rely on it.
UPDATE provider_connections SET user_id = '66666666-6666-6666-6666-666666666666'
 WHERE id = '5a000000-0000-7000-8000-000000000001';
UPDATE provider_connections SET provider_id = gen_random_uuid()
 WHERE id = '5a000000-0000-7000-8000-000000000001';
UPDATE provider_connections SET created_at = created_at - interval '1 day'
 WHERE id = '5a000000-0000-7000-8000-000000000001';

-- Replication mode does not switch the rules off.
SET session_replication_role = replica;
UPDATE provider_connections SET status = 'pending'
 WHERE id = '5a000000-0000-7000-8000-000000000001';
RESET session_replication_role;

-- Multi-row UPDATE: one illegal row refuses the whole statement.
UPDATE provider_connections SET status = 'expired', encrypted_credentials = '\x504301000000000f'
 WHERE provider_slug = 'matrix' AND status IN ('active', 'disconnected');
SELECT status, count(*) FROM provider_connections WHERE provider_slug = 'matrix'
 GROUP BY 1 ORDER BY 1;

-- These rows hold placeholder bytes, not sealed credentials: remove them.
DELETE FROM provider_connections
 WHERE provider_slug = 'matrix' OR id = '5a000000-0000-7000-8000-000000000001';
DROP FUNCTION try_transition(provider_connection_status, provider_connection_status);

-- Rows that lived elsewhere keep their status: COPY (what pg_restore uses)
-- and logical replication may insert any status, invariants still held.
COPY provider_connections (id, user_id, provider_id, provider_slug, status,
                           created_at, updated_at) FROM stdin;
5b000000-0000-7000-8000-000000000001	55555555-5555-5555-5555-555555555555	aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa	schwab	disconnected	2025-01-01 00:00:00+00	2025-02-01 00:00:00+00
\.
COPY provider_connections (id, user_id, provider_id, provider_slug, status,
                           created_at, updated_at) FROM stdin;
5b000000-0000-7000-8000-000000000002	55555555-5555-5555-5555-555555555555	aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa	schwab	active	2025-01-01 00:00:00+00	2025-02-01 00:00:00+00
\.
-- Only a COPY FROM into the table itself: a function that inserts, called
-- from a COPY TO, is held to the rule that new rows start pending or active.
CREATE FUNCTION sneak_in() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO provider_connections (id, user_id, provider_id, provider_slug, status,
                                      created_at, updated_at)
    VALUES ('5b000000-0000-7000-8000-000000000009', '55555555-5555-5555-5555-555555555555',
            'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', 'expired', now(), now());
    RETURN 1;
END $$;
COPY (SELECT sneak_in()) TO stdout;
CREATE TABLE other_copy_target (n int);
CREATE FUNCTION sneak_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sneak_in();
    RETURN NEW;
END $$;
CREATE TRIGGER sneak BEFORE INSERT ON other_copy_target FOR EACH ROW EXECUTE FUNCTION sneak_trigger();
COPY other_copy_target FROM stdin;
1
\.
DROP TABLE other_copy_target;
DROP FUNCTION sneak_trigger();
DROP FUNCTION sneak_in();
SET session_replication_role = replica;
INSERT INTO provider_connections (id, user_id, provider_id, provider_slug, status,
                                  created_at, updated_at)
VALUES ('5b000000-0000-7000-8000-000000000003', '55555555-5555-5555-5555-555555555555',
        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', 'expired', now(), now());
-- ...but transitions are still checked.
UPDATE provider_connections SET status = 'pending' WHERE id = '5b000000-0000-7000-8000-000000000003';
RESET session_replication_role;
SELECT id, status FROM provider_connections WHERE id::text LIKE '5b000000%' ORDER BY id;
DELETE FROM provider_connections WHERE id::text LIKE '5b000000%';
