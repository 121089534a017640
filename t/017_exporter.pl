# t/017_exporter.pl: health, as a monitoring system sees it.
#
# With the library preloaded, provider_stats() shows this database's
# worker running and its last round recent; after a round forced to fail
# (a trigger on the positions table raising once, its message long and
# multibyte, a detail that must not show) its last error, clipped on a
# character boundary, without the detail, and its time; rounds then commit
# again. The worker and the launcher name themselves in pg_stat_activity's
# application_name. Then the README's Monitoring statements (a role for
# the exporter and its grant) run as written, and Debian's
# prometheus-postgres-exporter, started on a free loopback port with
# examples/postgres_exporter.yml and that role, shows in its /metrics page
# every provider_connections_* metric with the value provider_stats()
# gives. The exporter is stopped at the end, failed or not.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;

use HTTP::Tiny;
use IPC::Run;
use PCTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $exporter_bin = $ENV{PC_POSTGRES_EXPORTER} // '/usr/bin/prometheus-postgres-exporter';
die "$exporter_bin is missing: install Debian's prometheus-postgres-exporter (scripts/common.sh install_deps does)"
  unless -x $exporter_bin;

my $exporter;    # the exporter's IPC::Run harness, once started
END
{
	# Before Cluster.pm's own END stops the server: never leave it running.
	if ($exporter)
	{
		eval { $exporter->kill_kill(grace => 5); };
		$exporter = undef;
	}
}

my $node = pc_node('exporter');
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', 'CREATE EXTENSION provider_connections CASCADE');

# call(SLUG): one successful connect (two events).
sub call
{
	my ($slug) = @_;
	$node->safe_psql('app', "SELECT ok FROM provider_connect('17171717-0000-0000-0000-000000000001',
		'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', '$slug', '\\x01')");
	return;
}

# expect(NAME, SQL): SQL (on app) becomes true within the default timeout;
# on a failure, what provider_stats() and pg_stat_activity showed.
sub expect
{
	my ($name, $sql) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $ok = ok($node->poll_query_until('app', $sql), $name);
	diag($node->safe_psql('app', 'SELECT * FROM provider_stats()') . "\n"
		  . $node->safe_psql('postgres', "SELECT pid, backend_type, datname, application_name, state
		                                   FROM pg_stat_activity WHERE backend_type LIKE 'provider_connections%'"))
	  unless $ok;
	return $ok;
}

# ---- the worker's columns ----

call('w1');
expect('the worker runs and a round of it committed within the last 10 s',
	"SELECT worker_running AND worker_last_round_at > clock_timestamp() - interval '10 s'
	   FROM provider_stats()");
is($node->safe_psql('app', 'SELECT worker_last_error IS NULL AND worker_last_error_at IS NULL FROM provider_stats()'),
	't', 'no error before any round failed');
is($node->safe_psql('postgres', "SELECT string_agg(backend_type || '=' || application_name, ', ' ORDER BY backend_type)
	                               FROM pg_stat_activity WHERE backend_type LIKE 'provider_connections%'"),
	'provider_connections launcher=provider_connections launcher, provider_connections worker=provider_connections worker',
	'the launcher and the worker set application_name');
expect('no event waits for a position', 'SELECT unnumbered_events = 0 FROM provider_stats()');

# A round forced to fail once: the first INSERT of positions with rows
# raises a message of 17 + 300 two-byte characters, with a detail.
$node->safe_psql('app', <<'SQL');
CREATE SEQUENCE public.pc17_failures;
CREATE FUNCTION public.pc17_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM new_rows) AND nextval('public.pc17_failures') = 1 THEN
		RAISE EXCEPTION 'injected failure %', repeat('é', 300) USING DETAIL = 'pc17-detail-not-shown';
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER pc17_fail_once AFTER INSERT ON provider_event_positions
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.pc17_fail_once();
SQL
my $before = $node->safe_psql('app', 'SELECT clock_timestamp()');
call('w2');
expect('a failed round is shown as the last error', 'SELECT worker_last_error IS NOT NULL FROM provider_stats()');
my $error = $node->safe_psql('app',
	"SELECT worker_last_error LIKE 'could not % feed positions: injected failure é%'
	        OR worker_last_error LIKE 'could not send notifications: injected failure é%',
	        octet_length(worker_last_error) BETWEEN 250 AND 255,
	        right(worker_last_error, 1) = 'é',
	        strpos(worker_last_error, 'pc17-detail') = 0,
	        worker_last_error_at BETWEEN '$before' AND clock_timestamp()
	   FROM provider_stats()");
is($error, 't|t|t|t|t',
	'the last error: what failed and its message, clipped to 255 bytes on a character boundary, without the detail, and its time')
  or diag($node->safe_psql('app', 'SELECT worker_last_error, worker_last_error_at FROM provider_stats()'));
expect('rounds commit again after it, and the events get their positions',
	'SELECT worker_last_round_at > worker_last_error_at AND unnumbered_events = 0 FROM provider_stats()');
$node->safe_psql('app', 'DROP TRIGGER pc17_fail_once ON provider_event_positions');

# ---- the README's Monitoring statements ----

my $readme = slurp_file("$FindBin::RealBin/../README.md");
my ($monitoring) = $readme =~ /^### Monitoring\n(.*?)^##? /ms;
my @blocks = ($monitoring // '') =~ /^```sql\n(.*?)^```/msg;
is(scalar @blocks, 1, 'Monitoring has one SQL block: the exporter\'s role and its grant');
$node->safe_psql('app', $blocks[0]);
my ($ret, $out, $err) = $node->psql('app', 'SELECT count(*) FROM provider_connections',
	extra_params => [ '-U', 'prometheus' ]);
like($err, qr/permission denied/, 'the exporter\'s role reads no table');

# Connections whose counts all differ, so that a column exported under
# another's name shows: active 4 (1 expiring soon, 1 overdue and leased),
# pending 2 (1 abandoned), revoked 3, expired 1, disconnected 1.
$node->safe_psql('app', <<'SQL');
SELECT (provider_connect('17171717-0000-0000-0000-000000000002', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
                         s, '\x01', 'oauth2', now() + interval '1 hour')).ok
  FROM unnest(ARRAY['soon', 'over', 'e1', 'r1', 'r2', 'r3', 'd1']) s;
UPDATE provider_connections SET credentials_expires_at = now() + interval '2 minutes' WHERE provider_slug = 'soon';
UPDATE provider_connections SET credentials_expires_at = now() - interval '2 minutes' WHERE provider_slug = 'over';
SELECT (provider_mark_expired(id)).ok FROM provider_connections WHERE provider_slug = 'e1';
SELECT (provider_mark_revoked(id)).ok FROM provider_connections WHERE provider_slug LIKE 'r_';
SELECT (provider_disconnect(user_id, id)).ok FROM provider_connections WHERE provider_slug = 'd1';
SELECT count(*) FROM provider_claim_expiring('5 minutes', 1, '5 minutes');
SELECT set_config('provider_connections.test_clock',
                  to_char((now() - interval '2 hours') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US+00'), false);
SELECT ok FROM provider_begin_connect('17171717-0000-0000-0000-000000000002', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'old');
RESET provider_connections.test_clock;
SELECT ok FROM provider_begin_connect('17171717-0000-0000-0000-000000000002', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'new');
SQL
expect('everything numbered before the scrape', 'SELECT unnumbered_events = 0 FROM provider_stats()');

# What the exporter must show, read as its role (the grant works).
my @columns = qw(pending active expired revoked failed disconnected expiring_soon overdue leased
  in_backoff refresh_exhausted pending_abandoned audit_rows_estimate feed_head unnumbered_events);
my $row = $node->safe_psql('app',
	'SELECT ' . join(', ', @columns) . ', worker_running::int,
	        extract(epoch FROM worker_last_error_at), notification_queue_usage
	   FROM provider_stats()',
	extra_params => [ '-U', 'prometheus' ]);
my %want;
@want{ @columns, 'worker_running', 'worker_last_error_timestamp_seconds', 'notification_queue_usage' } =
  split /\|/, $row;
is("$want{active}/$want{pending}/$want{revoked}/$want{expired}/$want{disconnected}/$want{expiring_soon}/$want{overdue}/$want{leased}/$want{pending_abandoned}",
	'4/2/3/1/1/1/1/1/1', 'provider_stats() as the exporter\'s role: the counts built');

# ---- the exporter ----

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $log = "$PostgreSQL::Test::Utils::log_path/017_exporter_postgres_exporter.log";
my $queries = "$FindBin::RealBin/../examples/postgres_exporter.yml";
{
	local $ENV{DATA_SOURCE_NAME} =
	  'host=' . $node->host . ' port=' . $node->port . ' user=prometheus dbname=app sslmode=disable';
	$exporter = IPC::Run::start(
		[
			$exporter_bin, "--web.listen-address=127.0.0.1:$port",
			"--extend.query-path=$queries", '--disable-default-metrics',
			'--disable-settings-metrics', '--no-collector.database',
			'--no-collector.bgwriter', '--log.level=info'
		],
		'<', \undef, '>&', $log);
}
note("exporter on 127.0.0.1:$port, its log in $log");

# Scrape until the provider metrics show, within the default timeout.
my $http = HTTP::Tiny->new(timeout => 10);
my ($page, $status) = ('', 'not scraped');
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
while (time() < $deadline)
{
	my $res = $http->get("http://127.0.0.1:$port/metrics");
	$status = "$res->{status} $res->{reason}";
	if ($res->{success} && $res->{content} =~ /^provider_connections_active[{ ]/m)
	{
		$page = $res->{content};
		last;
	}
	last unless $exporter->pumpable;    # it exited
	usleep(200_000);
}
ok($page ne '', 'the exporter\'s /metrics page has the provider metrics')
  or diag("last answer: $status\nexporter log:\n" . (-e $log ? slurp_file($log) : '(none)'));

my %got;
for my $line (split /\n/, $page)
{
	$got{$1} = $2 if $line =~ /^provider_connections_(\w+)(?:\{[^}]*\})? (\S+)$/;
}
note(join("\n", grep { /^provider_connections_/ } split /\n/, $page));
for my $c (@columns, 'worker_running', 'notification_queue_usage')
{
	is($got{$c}, $want{$c}, "provider_connections_$c is $want{$c}");
}
ok(defined $got{worker_last_error_timestamp_seconds}
	  && abs($got{worker_last_error_timestamp_seconds} - $want{worker_last_error_timestamp_seconds}) < 0.001,
	'provider_connections_worker_last_error_timestamp_seconds is the last error\'s time');
ok(defined $got{worker_last_round_timestamp_seconds}
	  && abs($got{worker_last_round_timestamp_seconds} - time()) < 60,
	'provider_connections_worker_last_round_timestamp_seconds is recent');
is($got{oldest_unnumbered_age_seconds}, '0', 'provider_connections_oldest_unnumbered_age_seconds is 0 with none waiting');
# The metrics the queries file declares (each "- name:" under metrics).
my @declared = slurp_file($queries) =~ /^\s+- (\w+):/mg;
is(join(', ', sort keys %got), join(', ', sort @declared), 'every column of the queries file is exported')
  or diag('declared: ' . join(', ', sort @declared));
like($page, qr/^pg_exporter_user_queries_load_error\{[^}]*\} 0$/m, 'the exporter loaded the queries file');
like($page, qr/^pg_exporter_last_scrape_error 0$/m, 'its last scrape had no error');
unlike($page, qr/^pg_settings_/m, 'no settings metrics (disabled)');

$exporter->kill_kill(grace => 5);
$exporter = undef;
$node->stop;
done_testing();
