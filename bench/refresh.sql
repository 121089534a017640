-- provider_refresh_tokens on one of 10,000 active connections.
\set n random(1, 10000)
SELECT provider_refresh_tokens((SELECT id FROM bench_ids WHERE n = :n), '\x7b22616363657373223a22746f6b656e2d32227d',
                               now() + interval '1 hour');
