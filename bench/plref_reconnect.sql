-- bench/plref_reconnect.sql: disconnect + reconnect with the PL/pgSQL reference (bench/plpgsql_reference.sql).
-- A seeded user disconnects their connection, then connects again (two
-- commands, two transactions, as an application would run them); plref_ids
-- then points at the new connection so refreshes keep finding a live one.
\set n random(1, :nseed)
SELECT r.* FROM plref_ids b, LATERAL plref.provider_disconnect(b.user_id, b.id) r WHERE b.n = :n;
WITH c AS (
    SELECT b.n, r.connection_id
      FROM plref_ids b,
           LATERAL plref.provider_connect(b.user_id, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
                                         '\x7b226163636573735f746f6b656e223a22746f6b656e2d31227d',
                                         'oauth2', now() + interval '1 hour') r
     WHERE b.n = :n)
UPDATE plref_ids SET id = c.connection_id FROM c WHERE plref_ids.n = c.n;
