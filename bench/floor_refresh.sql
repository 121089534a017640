-- bench/floor_refresh.sql: the floor of one successful provider_refresh_tokens,
-- without NOTIFY (the fair mix floor's 80%): one prepared statement updates a
-- seeded connection, picked at random through floor_ids as ext_refresh.sql
-- picks it, with a value sealed before the run (-D cipher), if it is active,
-- and writes the Attempted and Succeeded audit rows. No user function, no
-- trigger, no subtransaction, no encryption at call time.
\set n random(1, :nseed)
WITH ctx AS MATERIALIZED (
    SELECT clock_timestamp() AS now,
           jsonb_build_object('current_user', current_user, 'session_user', session_user,
                              'application_name', current_setting('application_name'),
                              'backend_pid', pg_backend_pid(),
                              'transaction_id', pg_current_xact_id()::text::bigint) AS context
), refreshed AS (
    UPDATE floor.provider_connections c
       SET encrypted_credentials = CAST(:cipher AS bytea), credentials_expires_at = now() + interval '1 hour',
           updated_at = ctx.now
      FROM ctx, floor_ids b
     WHERE b.n = :n AND c.user_id = b.user_id AND c.id = b.id AND c.status = 'active'
    RETURNING c.id, c.user_id, c.provider_id, c.provider_slug
)
INSERT INTO floor.provider_audit_log (event_id, event_type, action, user_id, connection_id,
                                      provider_id, provider_slug, occurred_at, context)
SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send(floor(date_part('epoch', clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid,
       e.event_type, e.action, r.user_id, r.id, r.provider_id, r.provider_slug, clock_timestamp(), ctx.context
  FROM refreshed r, ctx,
       (VALUES (1, 'ProviderTokenRefreshAttempted', 'provider_token_refresh_attempted'),
               (2, 'ProviderTokenRefreshSucceeded', 'provider_token_refreshed')) e(k, event_type, action)
 ORDER BY e.k
RETURNING id;
