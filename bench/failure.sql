-- A business failure: validated, audited, notified, nothing stored.
SELECT provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', '', '\x01');
