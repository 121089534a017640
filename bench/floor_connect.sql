-- bench/floor_connect.sql: the raw-SQL floor. The writes of one successful
-- provider_connect (the connection row with a ciphertext computed once
-- before the run and passed as :cipher, the Attempted and Succeeded audit
-- rows, their two NOTIFYs with the same JSON payload keys) as a single
-- prepared statement: no user functions, no triggers, no subtransaction,
-- no validation. Nothing written by hand can do the same work for less.
-- (pgbench substitutes every ":name", even inside quotes: no literal here
-- may contain a colon. The bench database runs with TimeZone UTC, so the
-- json form of occurred_at ends in +00:00.)
WITH ctx AS MATERIALIZED (
    SELECT gen_random_uuid() AS user_id,
           encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send(floor(date_part('epoch', clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid AS connection_id,
           encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send(floor(date_part('epoch', clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid AS attempted_event_id,
           encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send(floor(date_part('epoch', clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid AS succeeded_event_id,
           clock_timestamp() AS now,
           jsonb_build_object('current_user', current_user, 'session_user', session_user,
                              'application_name', current_setting('application_name'),
                              'backend_pid', pg_backend_pid(),
                              'transaction_id', pg_current_xact_id()::text::bigint) AS context
), attempted AS (
    INSERT INTO floor.provider_audit_log (event_id, event_type, action, user_id, provider_id,
                                          provider_slug, occurred_at, context)
    SELECT attempted_event_id, 'ProviderConnectionAttempted', 'provider_connection_attempted', user_id,
           'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', clock_timestamp(), context
      FROM ctx
    RETURNING id, event_id, event_type, occurred_at, user_id, connection_id, provider_id, provider_slug
), connection AS (
    INSERT INTO floor.provider_connections (id, user_id, provider_id, provider_slug, status,
                                            credential_type, encrypted_credentials,
                                            credentials_expires_at, connected_at, created_at, updated_at)
    SELECT connection_id, user_id, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', 'active',
           'oauth2', CAST(:cipher AS bytea), now() + interval '1 hour', ctx.now, ctx.now, ctx.now
      FROM ctx
    RETURNING id, user_id
), succeeded AS (
    INSERT INTO floor.provider_audit_log (event_id, event_type, action, user_id, connection_id,
                                          provider_id, provider_slug, occurred_at, context)
    SELECT ctx.succeeded_event_id, 'ProviderConnectionSucceeded', 'provider_connected', c.user_id, c.id,
           'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', clock_timestamp(), ctx.context
      FROM connection c, ctx
    RETURNING id, event_id, event_type, occurred_at, user_id, connection_id, provider_id, provider_slug
)
SELECT pg_notify('floor_events',
                 json_build_object('event_type', e.event_type, 'event_id', e.event_id, 'audit_id', e.id,
                                   'occurred_at', e.occurred_at, 'user_id', e.user_id,
                                   'connection_id', e.connection_id, 'provider_id', e.provider_id,
                                   'provider_slug', e.provider_slug)::text)
  FROM (SELECT * FROM attempted UNION ALL SELECT * FROM succeeded) e;
