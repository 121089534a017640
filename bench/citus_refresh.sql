-- bench/citus_refresh.sql: provider_refresh_tokens in its user-first form
-- (1.4), on one of the seeded connections picked at random (-D nseed=N).
-- bench/citus.sh runs it against both targets: on Citus the user's id lets
-- every statement go to the one shard, where the id-only form
-- (bench/ext_refresh.sql) first reads every shard to find the owner.
\set n random(1, :nseed)
SELECT r.* FROM ext_ids b,
       LATERAL provider_refresh_tokens(b.user_id, b.id,
                                       '\x7b226163636573735f746f6b656e223a22746f6b656e2d32227d',
                                       now() + interval '1 hour', NULL, NULL) r
 WHERE b.n = :n;
