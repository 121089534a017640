-- bench/ext_connect.sql: provider_connect of the extension (schema public),
-- success path: a new user each time, credentials sealed, two events.
SELECT * FROM provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
                                    '\x7b226163636573735f746f6b656e223a22746f6b656e2d31227d',
                                    'oauth2', now() + interval '1 hour');
