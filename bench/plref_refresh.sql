-- bench/plref_refresh.sql: provider_refresh_tokens of the PL/pgSQL reference (bench/plpgsql_reference.sql)
-- on one of the seeded connections, picked at random (-D nseed=N, the seed size);
-- plref_ids maps 1..N to the connection currently live for that user.
\set n random(1, :nseed)
SELECT r.* FROM plref_ids b,
       LATERAL plref.provider_refresh_tokens(b.id, '\x7b226163636573735f746f6b656e223a22746f6b656e2d32227d',
                                            now() + interval '1 hour') r
 WHERE b.n = :n;
