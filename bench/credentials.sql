\set n random(1, 10000)
SELECT provider_credentials((SELECT id FROM bench_ids WHERE n = :n));
