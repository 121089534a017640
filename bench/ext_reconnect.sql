-- bench/ext_reconnect.sql: disconnect + reconnect with the extension (schema public).
-- A seeded user disconnects their connection, then connects again (two
-- commands, two transactions, as an application would run them); ext_ids
-- then points at the new connection so refreshes keep finding a live one.
\set n random(1, :nseed)
SELECT r.* FROM ext_ids b, LATERAL provider_disconnect(b.user_id, b.id) r WHERE b.n = :n;
WITH c AS (
    SELECT b.n, r.connection_id
      FROM ext_ids b,
           LATERAL provider_connect(b.user_id, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
                                         '\x7b226163636573735f746f6b656e223a22746f6b656e2d31227d',
                                         'oauth2', now() + interval '1 hour') r
     WHERE b.n = :n)
UPDATE ext_ids SET id = c.connection_id FROM c WHERE ext_ids.n = c.n;
