-- provider_credentials: read and open one of 10,000 sealed credentials.
\set n random(1, 10000)
SELECT provider_credentials((SELECT id FROM bench_ids WHERE n = :n));
