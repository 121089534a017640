-- bench/floor_connect_nonotify.sql: floor_connect.sql without its two
-- NOTIFYs: the same rows written by the same single prepared statement.
-- The difference between the two is what notifying inside the caller's
-- transaction costs (PostgreSQL serializes notifying commits).
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
SELECT e.id FROM (SELECT id FROM attempted UNION ALL SELECT id FROM succeeded) e;
