-- provider_connect with valid arguments: the full success path.
SELECT provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
                        '\x7b22616363657373223a22746f6b656e227d', 'oauth2', now() + interval '1 hour');
