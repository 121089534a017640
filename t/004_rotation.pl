# t/004_rotation.pl: rotate the key of a populated database while calls run,
# then drop the old key: every credential still opens.
# The keys travel the way an operator moves them: write the new key file,
# point the settings at the new and the old file, reload.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;

use POSIX qw(WNOHANG);
use PCTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = pc_node('rotation');
fresh_db($node, 'rotation');
my $log_start = log_size($node);

write_key_file($node->data_dir . '/rotated.key', random_key());
$node->safe_psql('rotation', q{
	SELECT provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
	                        convert_to('token-' || n, 'UTF8'))
	  FROM generate_series(1, 3000) n});
note('3000 connections sealed with the old key');
my $audit_before = $node->safe_psql('rotation', 'SELECT count(*) FROM provider_audit_log');

# Calls keep running during the rotation: refreshes, connects, disconnects.
my $work = PostgreSQL::Test::Utils::tempdir;
append_to_file("$work/calls.sql", <<'SQL');
\set pick random(1, 10)
SELECT CASE WHEN :pick <= 6 THEN
         provider_refresh_tokens((SELECT id FROM provider_connections WHERE status = 'active'
                                   OFFSET (random() * 1000)::int LIMIT 1), '\x72656672657368')
       WHEN :pick <= 8 THEN
         provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')
       ELSE
         (SELECT provider_disconnect(user_id, id) FROM
            (SELECT user_id, id FROM provider_connections WHERE status = 'active'
              OFFSET (random() * 1000)::int LIMIT 1) one)
       END;
SQL

# pgbench in the background, its output in a file; waitpid tells when it is done.
my $load = fork();
die "fork: $!" unless defined $load;
if ($load == 0)
{
	open STDOUT, '>', "$work/out" or die $!;
	open STDERR, '>&', \*STDOUT or die $!;
	exec('timeout', '60', 'pgbench', '-h', $node->host, '-p', $node->port,
		'-n', '-c', '3', '-T', '8', '-f', "$work/calls.sql", 'rotation')
	  or die "exec pgbench: $!";
}
my $load_status;
sub load_running
{
	return 0 if defined $load_status;
	return 1 if waitpid($load, WNOHANG) == 0;
	$load_status = $? >> 8;
	return 0;
}

# The calls have started before the rotation does.
ok( $node->poll_query_until('rotation',
		"SELECT count(*) > $audit_before FROM provider_audit_log"),
	'calls are running');

$node->safe_psql('rotation', q{
	ALTER SYSTEM SET provider_connections.encryption_key_file = 'rotated.key';
	ALTER SYSTEM SET provider_connections.encryption_key_previous_file = 'provider_connections.key';
	SELECT pg_reload_conf();});
ok( wait_for_setting(
		$node, 'provider_connections.encryption_key_previous_file',
		'provider_connections.key'),
	'the reload reached the server');

# remaining is NULL (empty here) after a full batch: more may remain. Go on
# while the calls run; a batch that finds nothing to do waits a little for
# the calls to seal more (pacing, not synchronisation). A rotation that has
# not finished after 400 batches that did work does not converge.
my ($batches, $working, $remaining) = (0, 0, '');
while (1)
{
	$remaining = $node->safe_psql('rotation',
		'SELECT remaining FROM provider_rotate_credentials(250)');
	$batches++;
	my $running = load_running();
	last if !$running && $remaining eq '0';
	if ($remaining eq '0') { usleep(50_000); next; }
	last if ++$working >= 400;
}
isnt($working, 400, "the rotation converged ($batches batches of 250, $working of them with work left)");
while (load_running()) { usleep(100_000); }
my $out = slurp_file("$work/out");
is($load_status, 0, 'the calls ran to the end without an error') or diag("pgbench said:\n$out");
my ($calls) = $out =~ /^number of transactions actually processed: (\d+)/m;
note("rotated in $batches batches of 250 while " . ($calls // '?')
	  . ' calls ran (3 sessions, one call each)');

# One more pass for anything sealed by a session that had not reloaded yet.
$node->safe_psql('rotation', 'SELECT remaining FROM provider_rotate_credentials(100000)');
$node->safe_psql('rotation', q{
	ALTER SYSTEM RESET provider_connections.encryption_key_previous_file;
	SELECT pg_reload_conf();});
ok(wait_for_setting($node, 'provider_connections.encryption_key_previous_file', ''),
	'the old key is dropped');

sql_ok($node, 'rotation', 'nothing remains under the old key',
	'SELECT remaining = 0 FROM provider_rotate_credentials(1)');
my $sealed = $node->safe_psql('rotation',
	'SELECT count(*) FROM provider_connections WHERE encrypted_credentials IS NOT NULL');
sql_ok($node, 'rotation',
	"with the old key dropped, every credential opens ($sealed sealed)",
	q{SELECT count(*) > 1000 AND count(*) FILTER (WHERE provider_credentials(id) IS NULL) = 0
	   FROM provider_connections WHERE encrypted_credentials IS NOT NULL});
sql_ok($node, 'rotation', 'the refreshed credentials are the ones that were stored',
	q{SELECT count(*) > 0 AND bool_and(provider_credentials(id) = '\x72656672657368')
	   FROM provider_connections WHERE updated_at > created_at AND status = 'active'});
sql_ok($node, 'rotation', 'calls during the rotation kept their audit pairs',
	q{SELECT count(*) FILTER (WHERE event_type LIKE '%Attempted') * 2 = count(*) FROM provider_audit_log});

my @crashes = crash_lines($node, $log_start);
is(scalar(@crashes), 0, 'no backend crashed')
  or diag(join("\n", 'the server log reports:', @crashes));

$node->stop;
done_testing();
