# t/015_refresh_workers.pl: examples/refresh_worker.py, three processes at
# once, against 300 connections expiring over 20 seconds, with a fake
# provider (t/fake_provider.py) that is slower than the lease for some
# connections, fails for others (for a while, or for good), and refuses
# some refresh tokens. One more worker is SIGKILLed while it holds leases
# before the others start; one of the three never renews its leases, so
# its slow calls lose them and its late refreshes meet the fence.
#
# What the database saw is recorded by a trigger of the test's own on
# provider_connections (every claim, refresh and failure, with the row
# before and after), and counted here, independently of the workers:
#   doubled        a connection refreshed twice under one lease: 0
#   stale accepted a refresh stored with a token not in force: 0
#   missed         a connection that could be refreshed (not failing for
#                  good, not refused) and was not before it expired: 0
# and the backoff schedule (300 ms, then 600 ms), exhaustion after 3
# failures, and the SIGKILLed worker's leases taken over only once they
# ran out. It prints the counts: claims, refreshes, doubled, stale
# refused, failures, exhausted, missed.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PCTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $python   = '/usr/bin/python3';
my $worker   = "$FindBin::RealBin/../examples/refresh_worker.py";
my $provider = "$FindBin::RealBin/fake_provider.py";
plan skip_all => "$python cannot import psycopg (Debian: apt-get install python3-psycopg)"
  if system($python, '-c', 'import psycopg') != 0;

my $node = pc_node('refresh_workers', start => 0);
$node->append_conf('postgresql.conf', q{
provider_connections.refresh_backoff = '300ms'
provider_connections.refresh_backoff_max = '1s'
provider_connections.max_refresh_attempts = 3
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', q{
CREATE EXTENSION provider_connections CASCADE;
CREATE ROLE provider_worker LOGIN;
GRANT USAGE ON SCHEMA public TO provider_worker;
GRANT SELECT ON provider_connections_overview TO provider_worker;
GRANT EXECUTE ON FUNCTION provider_credentials(uuid),
                          provider_claim_expiring(interval, integer, interval),
                          provider_refresh_tokens(uuid, bytea, timestamptz, text, uuid),
                          provider_mark_revoked(uuid, text, uuid),
                          provider_renew_lease(uuid, uuid, interval),
                          provider_release_lease(uuid, uuid),
                          provider_record_refresh_failure(uuid, uuid, text, interval) TO provider_worker;

-- The test's record of every change to a connection, in the order the
-- row's lock serialized them; the token a refresh stored is read back from
-- the credentials the fake provider made.
CREATE TABLE trail (n bigserial PRIMARY KEY, id uuid, at timestamptz, kind text,
                    old_token uuid, new_token uuid, old_lease_until timestamptz, new_lease_until timestamptz,
                    old_next timestamptz, new_next timestamptz, old_expires timestamptz,
                    new_failures int, stored_token text);
CREATE FUNCTION trail() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    INSERT INTO trail (id, at, kind, old_token, new_token, old_lease_until, new_lease_until,
                       old_next, new_next, old_expires, new_failures, stored_token)
    SELECT NEW.id, clock_timestamp(), k, OLD.lease_token, NEW.lease_token, OLD.lease_until,
           NEW.lease_until, OLD.next_refresh_at, NEW.next_refresh_at, OLD.credentials_expires_at,
           NEW.refresh_failures,
           CASE WHEN k = 'refresh' THEN convert_from(provider_credentials(NEW.id), 'UTF8')::json->>'lease_token' END
      FROM (SELECT CASE
              WHEN NEW.status = 'active' AND NEW.encrypted_credentials IS DISTINCT FROM OLD.encrypted_credentials THEN 'refresh'
              WHEN NEW.lease_token IS DISTINCT FROM OLD.lease_token THEN 'claim'
              WHEN NEW.refresh_failures > OLD.refresh_failures THEN 'failure'
              WHEN NEW.status <> OLD.status THEN 'status'
              ELSE 'other' END) s(k);
    RETURN NULL;
END $$;
CREATE TRIGGER trail AFTER UPDATE ON provider_connections FOR EACH ROW EXECUTE FUNCTION trail();
});

# 300 connections expiring from 35 to 55 seconds from now, one every
# 1/15 s (each in the claim window, 30 s, for long enough that a loaded
# machine's slow worker start does not make them expire: with 15 s, 16 of
# 300 did once, in a run sharing two cores with a full CI run), the kinds interleaved: 240 ok, 20 slow, 20 flaky, 10 dead, 10 gone.
$node->safe_psql('app', q{
SELECT count(*) FROM (
  SELECT provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
                          CASE WHEN i % 30 IN (1, 16) THEN 'slow' WHEN i % 30 IN (2, 17) THEN 'flaky'
                               WHEN i % 30 = 3 THEN 'dead' WHEN i % 30 = 4 THEN 'gone' ELSE 'ok' END || i,
                          convert_to('{"lease_token": null}', 'UTF8'), 'oauth2',
                          clock_timestamp() + interval '35 seconds' + i * interval '1 second' / 15)
    FROM generate_series(1, 300) i) c;
});

my $connstr = $node->connstr('app') . ' user=provider_worker';
my @common = ('--provider', $provider, '--within', '30', '--lease', '2', '--batch', '10', '--idle', '0.2');

# start_worker(LABEL, ENV, ARGS...): a worker in the background.
sub start_worker
{
	my ($label, $env, @args) = @_;
	my $w = { label => $label, out => '', err => '' };
	local %ENV = (%ENV, %$env);
	$w->{h} = IPC::Run::start([ $python, $worker, @common, @args, $connstr ],
		'<', \undef, '>', \$w->{out}, '2>', \$w->{err});
	return $w;
}

# The worker to be killed starts alone, once 10 connections are within its
# window, each of its calls taking 5 s: it claims a batch of 10 and renews
# their leases while the first call runs.
ok($node->poll_query_until('app', q{
	SELECT count(*) >= 10 FROM provider_connections
	 WHERE credentials_expires_at <= clock_timestamp() + interval '30 seconds'}),
	'10 connections are within the claim window');
my $victim = start_worker('victim', { FAKE_DELAY => '5' });
my $deadline = time + 60;
until ($victim->{out} =~ /^claimed count=\d+/m || time > $deadline)
{
	last unless eval { $victim->{h}->pump_nb; 1 };    # it ended: say why below
	usleep(20_000);
}
like($victim->{out}, qr/^claimed count=10$/m, 'the victim claimed a batch of 10')
  or diag("stdout: $victim->{out}\nstderr: $victim->{err}");
$victim->{h}->signal('KILL');
eval { $victim->{h}->finish };
# What it held when it died (it refreshed nothing: its first call takes 5 s).
$node->safe_psql('app', q{
	CREATE TABLE held AS SELECT id, lease_until FROM provider_connections WHERE lease_until IS NOT NULL});
my $held = $node->safe_psql('app', 'SELECT count(*) FROM held');
ok($held >= 9, "the SIGKILLed worker held leases ($held)");

# The three workers; w2 never renews.
my @workers = (start_worker('w1', {}), start_worker('w2', {}, '--no-renew'), start_worker('w3', {}));

# Until every connection that can be refreshed is (bounded: the last one
# expires 55 s after it was made), and the dead ones are exhausted.
ok($node->poll_query_until('app', q{
	SELECT count(*) = 0 FROM provider_connections
	 WHERE (provider_slug !~ '^(dead|gone)' AND credentials_expires_at < clock_timestamp() + interval '30 minutes')
	    OR (provider_slug ~ '^dead' AND refresh_failures < 3)
	    OR (provider_slug ~ '^gone' AND status = 'active')}),
	'every connection was refreshed, revoked or exhausted')
  or diag($node->safe_psql('app', q{
	SELECT provider_slug, status, refresh_failures, lease_until, next_refresh_at, credentials_expires_at
	  FROM provider_connections WHERE credentials_expires_at < clock_timestamp() + interval '30 minutes'
	 ORDER BY credentials_expires_at LIMIT 20}));

# SIGTERM: each stops cleanly (exit 0) with its summary.
for my $w (@workers)
{
	$w->{h}->signal('TERM');
	$w->{h}->finish;
	is($w->{h}->result(0), 0, "$w->{label} stopped on SIGTERM with exit status 0")
	  or diag("stderr: $w->{err}");
	like($w->{out}, qr/^summary claims=\d+ refreshed=\d+/m, "$w->{label} printed its summary");
	note("$w->{label}: " . ($w->{out} =~ /^(summary .*)$/m)[0]);
}

# The counts, from the trail and the audit log.
my %c = split /[|\n]/, $node->safe_psql('app', q{
	SELECT 'claims', count(*) FILTER (WHERE kind = 'claim') FROM trail
	UNION ALL SELECT 'refreshes', count(*) FILTER (WHERE kind = 'refresh') FROM trail
	UNION ALL SELECT 'doubled', count(*) FROM (SELECT id, old_token FROM trail WHERE kind = 'refresh'
	                                            GROUP BY 1, 2 HAVING count(*) > 1) d
	UNION ALL SELECT 'stale_accepted', count(*) FROM trail
	           WHERE kind = 'refresh' AND NOT (old_lease_until IS NOT NULL AND stored_token = old_token::text)
	UNION ALL SELECT 'stale_refused', count(*) FROM provider_audit_log
	           WHERE reason = 'Lease not held: it was ended or claimed again'
	UNION ALL SELECT 'failures', count(*) FROM provider_audit_log
	           WHERE event_type = 'ProviderTokenRefreshFailed' AND context ? 'attempt'
	UNION ALL SELECT 'exhausted', count(*) FROM provider_connections WHERE refresh_failures >= 3
	UNION ALL SELECT 'revoked', count(*) FROM provider_connections WHERE status = 'revoked'
	UNION ALL SELECT 'missed', count(*) FROM provider_connections c
	           WHERE c.provider_slug !~ '^(dead|gone)'
	             AND NOT EXISTS (SELECT 1 FROM trail t WHERE t.id = c.id AND t.kind = 'refresh'
	                                AND t.at <= t.old_expires)
});
diag(sprintf('counts: claims=%d refreshes=%d doubled=%d stale_accepted=%d stale_refused=%d '
	  . 'failures=%d exhausted=%d revoked=%d missed=%d',
	@c{qw(claims refreshes doubled stale_accepted stale_refused failures exhausted revoked missed)}));
is($c{doubled}, 0, 'no connection was refreshed twice under one lease');
is($c{stale_accepted}, 0, 'no refresh was stored with a token not in force');
is($c{missed}, 0, 'every connection that could be refreshed was, before it expired');
is($c{refreshes}, 280, 'each of the 280 refreshable connections refreshed exactly once');
is($c{revoked}, 10, 'the 10 refused refresh tokens: revoked');
is($c{exhausted}, 10, 'the 10 always-failing connections: exhausted');
# flaky: 2 failures each, dead: 3 each.
is($c{failures}, 20 * 2 + 10 * 3, 'failures recorded: 2 per flaky connection, 3 per dead one');

# The backoff schedule: 300 ms after the first failure, 600 ms after the
# second; the third (dead ones) exhausts. next_refresh_at is set from the
# clock just before the trail's own clock reading.
is($node->safe_psql('app', q{
	SELECT string_agg(DISTINCT new_failures || ':' || CASE
	         WHEN new_next - at BETWEEN interval '0.3 s' - interval '0.25 s' AND interval '0.3 s' THEN '300ms'
	         WHEN new_next - at BETWEEN interval '0.6 s' - interval '0.25 s' AND interval '0.6 s' THEN '600ms'
	         WHEN new_next - at BETWEEN interval '1 s' - interval '0.25 s' AND interval '1 s' THEN '1s'
	         ELSE (new_next - at)::text END, ',' ORDER BY new_failures || ':' || CASE
	         WHEN new_next - at BETWEEN interval '0.3 s' - interval '0.25 s' AND interval '0.3 s' THEN '300ms'
	         WHEN new_next - at BETWEEN interval '0.6 s' - interval '0.25 s' AND interval '0.6 s' THEN '600ms'
	         WHEN new_next - at BETWEEN interval '1 s' - interval '0.25 s' AND interval '1 s' THEN '1s'
	         ELSE (new_next - at)::text END)
	  FROM trail WHERE kind = 'failure'}),
	'1:300ms,2:600ms,3:1s', 'backoff: 300 ms, then 600 ms, capped at 1 s');
is($node->safe_psql('app', q{
	SELECT count(*) FROM trail WHERE kind = 'claim' AND old_next IS NOT NULL AND at < old_next}),
	'0', 'no connection was claimed before its backoff ran out');
is($node->safe_psql('app', q{
	SELECT count(*) FROM trail c
	 WHERE c.kind = 'claim'
	   AND c.at > (SELECT f.at FROM trail f WHERE f.id = c.id AND f.kind = 'failure' AND f.new_failures = 3)}),
	'0', 'an exhausted connection is not claimed again');
is($node->safe_psql('app', q{
	SELECT count(*) FROM provider_audit_log
	 WHERE event_type = 'ProviderTokenRefreshFailed' AND needs_user_action
	   AND (context->>'exhausted')::boolean AND (context->>'attempt')::int = 3}),
	'10', 'each exhaustion asks for the user (needs_user_action) at attempt 3');

# The SIGKILLed worker's connections: each claimed again only once its
# lease had run out, then handled (refreshed, or failed, or revoked).
is($node->safe_psql('app', q{
	SELECT count(*) || '/' || count(*) FILTER (WHERE first_claim >= h.lease_until)
	       || '/' || count(*) FILTER (WHERE handled)
	  FROM held h,
	       LATERAL (SELECT min(at) FILTER (WHERE kind = 'claim') AS first_claim,
	                       bool_or(kind IN ('refresh', 'failure', 'status')) AS handled
	                  FROM trail t WHERE t.id = h.id
	                   AND t.at > (SELECT max(at) FROM trail WHERE id = h.id AND new_lease_until = h.lease_until)) x}),
	"$held/$held/$held", "the SIGKILLed worker's $held connections: taken over after their leases ran out, and handled");

$node->stop;
done_testing();
