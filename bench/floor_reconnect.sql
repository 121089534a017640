-- bench/floor_reconnect.sql: the floor of disconnect + reconnect, without
-- NOTIFY (the fair mix floor's 5%): two statements, two commits, as
-- ext_reconnect.sql. A seeded user's connection is disconnected (credentials
-- cleared) with its Attempted and Succeeded audit rows; then the user
-- connects again: a new connection row with a value sealed before the run,
-- its two audit rows, and floor_ids pointed at it.
\set n random(1, :nseed)
WITH ctx AS MATERIALIZED (
    SELECT clock_timestamp() AS now,
           jsonb_build_object('current_user', current_user, 'session_user', session_user,
                              'application_name', current_setting('application_name'),
                              'backend_pid', pg_backend_pid(),
                              'transaction_id', pg_current_xact_id()::text::bigint) AS context
), disconnected AS (
    UPDATE floor.provider_connections c
       SET status = 'disconnected', encrypted_credentials = NULL, credential_type = NULL,
           credentials_expires_at = NULL, updated_at = ctx.now
      FROM ctx, floor_ids b
     WHERE b.n = :n AND c.user_id = b.user_id AND c.id = b.id
    RETURNING c.id, c.user_id, c.provider_id, c.provider_slug
)
INSERT INTO floor.provider_audit_log (event_id, event_type, action, user_id, connection_id,
                                      provider_id, provider_slug, occurred_at, context)
SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send(floor(date_part('epoch', clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid,
       e.event_type, e.action, r.user_id, r.id, r.provider_id, r.provider_slug, clock_timestamp(), ctx.context
  FROM disconnected r, ctx,
       (VALUES (1, 'ProviderDisconnectionAttempted', 'provider_disconnection_attempted'),
               (2, 'ProviderDisconnectionSucceeded', 'provider_disconnected')) e(k, event_type, action)
 ORDER BY e.k
RETURNING id;
WITH ctx AS MATERIALIZED (
    SELECT b.user_id,
           encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send(floor(date_part('epoch', clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid AS connection_id,
           encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send(floor(date_part('epoch', clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid AS attempted_event_id,
           encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send(floor(date_part('epoch', clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid AS succeeded_event_id,
           clock_timestamp() AS now,
           jsonb_build_object('current_user', current_user, 'session_user', session_user,
                              'application_name', current_setting('application_name'),
                              'backend_pid', pg_backend_pid(),
                              'transaction_id', pg_current_xact_id()::text::bigint) AS context
      FROM floor_ids b WHERE b.n = :n
), attempted AS (
    INSERT INTO floor.provider_audit_log (event_id, event_type, action, user_id, provider_id,
                                          provider_slug, occurred_at, context)
    SELECT attempted_event_id, 'ProviderConnectionAttempted', 'provider_connection_attempted', user_id,
           'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', clock_timestamp(), context
      FROM ctx
    RETURNING id
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
    RETURNING id
)
UPDATE floor_ids SET id = c.id FROM connection c WHERE floor_ids.n = :n;
