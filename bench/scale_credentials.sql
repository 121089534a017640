-- bench/scale_credentials.sql: provider_credentials of the extension (schema
-- public) on one of the connections, picked at random (-D nseed=N); ext_ids
-- maps 1..N to the connection currently live for that user (bench/scale.sh).
\set n random(1, :nseed)
SELECT provider_credentials(b.id) FROM ext_ids b WHERE b.n = :n;
