# t/011_cron.pl: the maintenance functions scheduled with pg_cron, as the
# README's Operations section does it, on a server that listens on a Unix
# socket only (so cron.host must name the socket directory): the README's
# own statements schedule the jobs, and pg_cron itself then runs them
# (within a minute: pg_cron 1.4 schedules by the minute): the overdue
# connection is expired and the events the consumer passed are purged.
# The purge job's command also runs before any consumer stored a position.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;

use PCTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pc_node('cron', start => 0, preload => 'provider_connections,pg_cron');
my $socket = $node->host;
$node->append_conf('postgresql.conf', qq{
cron.database_name = 'app'
cron.host = '$socket'
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', 'CREATE EXTENSION provider_connections CASCADE');
$node->safe_psql('app', 'CREATE EXTENSION pg_cron');

# The README's statements, as written there: every SQL block of the
# section runs here.
my $readme = slurp_file("$FindBin::RealBin/../README.md");
# (Its Monitoring subsection is t/017_exporter.pl's.)
my ($ops) = $readme =~ /## Operations(.*?)(?:### Monitoring|## Upgrading)/s;
my @blocks = $ops =~ /```sql\n(.*?)```/sg;
is(scalar @blocks, 3, 'Operations has three SQL blocks: the jobs, the consumers\' table, the lag query');

# The consumers' positions, which the README's purge job reads.
my ($positions) = grep { /CREATE TABLE consumer\.consumer_position/ } @blocks;
ok($positions, "the README's table of consumer positions was found");
$node->safe_psql('app', $positions);
my ($schedule) = grep { /cron\.schedule/ } @blocks;
ok($schedule, "the README's scheduling example was found");
$schedule =~ s/^CREATE EXTENSION pg_cron;\n//m;
$node->safe_psql('app', $schedule);
is($node->safe_psql('app', q{SELECT string_agg(jobname || ' ' || schedule, ', ' ORDER BY jobname) FROM cron.job}),
	'provider-abandoned */10 * * * *, provider-expire * * * * *, provider-purge 17 3 * * *',
	"the README's jobs are scheduled");
my ($lag) = grep { /AS lag/ } @blocks;
ok($lag, "the README's lag query was found");

# Some history: three connections, one of them overdue, all numbered.
$node->safe_psql('app', q{
SELECT provider_connect('c1000000-0000-0000-0000-000000000001', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
                        's' || n, '\x01', 'oauth2', now() + interval '1 hour') FROM generate_series(1, 3) n;
UPDATE provider_connections SET credentials_expires_at = now() - interval '2 minutes' WHERE provider_slug = 's1';
SELECT count(*) FROM provider_events_since(0, 1000);
});

# The purge job's command as the README schedules it, before any consumer
# stored a position: it runs (a NULL bound would be refused) and purges
# nothing, since no consumer has passed anything. (Rolled back: the event
# recording the purge would move the head the lag check below expects.)
my ($purge_job) = $schedule =~ /'provider-purge',\s*'[^']*',\s*\$\$(.*?)\$\$/s;
ok($purge_job, "the README's purge job command was found");
my ($ret, $out, $err) = $node->psql('app', "BEGIN;\n$purge_job;\nROLLBACK;");
is("$ret/$out", '0/0', 'the purge job runs before any consumer stored a position, and purges nothing')
  or diag("stderr: $err");
$node->safe_psql('app', q{INSERT INTO consumer.consumer_position VALUES ('mailer', 4);});
is($node->safe_psql('app', $lag), '2', "the README's lag query: the head (6) minus the stored position (4)");

# The abandoned-flows job's command as the README schedules it: a flow
# begun two hours ago fails, one begun just now stays pending.
my ($abandoned_job) = $schedule =~ /'provider-abandoned',\s*'[^']*',\s*\$\$(.*?)\$\$/s;
ok($abandoned_job, "the README's abandoned-flows job command was found");
my $two_hours_ago = $node->safe_psql('app',
	q{SELECT to_char((now() - interval '2 hours') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'});
$node->safe_psql('app', qq{
SET provider_connections.test_clock = '$two_hours_ago';
SELECT provider_begin_connect('c1000000-0000-0000-0000-000000000002', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'old-flow');
RESET provider_connections.test_clock;
SELECT provider_begin_connect('c1000000-0000-0000-0000-000000000002', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'new-flow');
});
is($node->safe_psql('app', "BEGIN;\n$abandoned_job;\nROLLBACK;"), '1',
	'the abandoned-flows job fails the flow begun two hours ago, and only it');

# A purge job due every minute as well (pg_cron 1.4 has no finer
# schedule), so that the test sees pg_cron run both within a minute.
$node->safe_psql('app', q{
SELECT cron.schedule('purge-now', '* * * * *',
       $$SELECT provider_purge_events(now() + interval '1 day',
                                      (SELECT min(position) FROM consumer.consumer_position))$$);
});
ok($node->poll_query_until('app',
		q{SELECT status = 'expired' FROM provider_connections WHERE provider_slug = 's1'}),
	'pg_cron ran provider_expire_overdue: the overdue connection is expired');
ok($node->poll_query_until('app',
		q{SELECT count(*) > 0 FROM provider_audit_log WHERE event_type = 'ProviderEventsPurged'
		   AND (context->>'audit_rows')::int = 4}),
	'pg_cron ran provider_purge_events: the 4 events the consumer passed are gone');
is($node->safe_psql('app', q{SELECT min(global_position) FROM provider_event_positions}), '5',
	'nothing after the stored position was purged');
is($node->safe_psql('app', q{
	SELECT count(*) FROM cron.job_run_details WHERE status = 'failed'}), '0', 'no job run failed')
  or diag($node->safe_psql('app', q{SELECT command, return_message FROM cron.job_run_details WHERE status = 'failed' LIMIT 5}));
is($node->safe_psql('app', q{
	SELECT count(*) FROM provider_audit_log WHERE provider_slug = 's1' AND event_type LIKE 'ProviderExpiryMark%'}),
	'2', 'the expiry was recorded like a call: Attempted and Succeeded');

$node->stop;
done_testing();
