-- What an application without the extension does at least: one INSERT of a
-- connection row and one NOTIFY, no audit row, no encryption, no state checks.
INSERT INTO bench_plain (id, user_id, provider_id, provider_slug, status, credentials, created_at)
VALUES (gen_random_uuid(), gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', 'active',
        '\x7b22616363657373223a22746f6b656e227d', now());
NOTIFY bench_events;
