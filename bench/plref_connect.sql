-- bench/plref_connect.sql: provider_connect of the PL/pgSQL reference (bench/plpgsql_reference.sql),
-- success path: a new user each time, credentials sealed, two events.
SELECT * FROM plref.provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
                                    '\x7b226163636573735f746f6b656e223a22746f6b656e2d31227d',
                                    'oauth2', now() + interval '1 hour');
