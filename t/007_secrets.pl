# t/007_secrets.pl: issue 9's three reproductions no longer reproduce.
#
# (a) No setting of ours can stop the server: a reload with a bad value for
#     each of them (in postgresql.conf, and through ALTER SYSTEM where that
#     would pass) keeps the postmaster running and the old value; a restart
#     with the bad values starts, and calls work with the key file.
# (b) The key never reaches the server log: with log_statement = all and
#     log_min_messages = debug1, after a session of calls, failures, a key
#     rotation by the documented steps, reloads, and attempts to set the
#     retired settings, no key's text is in the log, in pg_stat_statements,
#     or in what a pg_monitor role reads from pg_settings.
# (c) A plaintext credential sent as a bind parameter does not reach the log
#     under the recommended settings (log_parameter_max_length = 0 and
#     log_parameter_max_length_on_error = 0), while PostgreSQL's defaults do
#     log it (so the test can see a leak); and auto_explain with verbose
#     nested plans never shows the sealed bytes our statements write.
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

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
my $have_pgss = -e "$pkglibdir/pg_stat_statements.so";
my $have_auto_explain = -e "$pkglibdir/auto_explain.so";

my $node = pc_node(
	'secrets',
	preload => ($have_pgss ? 'pg_stat_statements,' : '') . 'provider_connections',
	conf => q{
log_statement = 'all'
log_min_messages = debug1
log_min_error_statement = debug1
});
fresh_db($node, 'secrets');
$node->safe_psql('secrets', 'CREATE EXTENSION pg_stat_statements') if $have_pgss;
note('pg_stat_statements is not installed: its checks are skipped') unless $have_pgss;

my $data = $node->data_dir;
my $conf_path = "$data/postgresql.conf";

# Every text that must never reach the log. Each is random, so finding one
# (or its first 24 characters) can only mean it leaked.
my %secret = (
	'the key' => key_of($node),
	'the previous key of part (a)' => random_key(),
	'the key of a world-readable file' => random_key(),
	'the rotated key' => random_key(),
	'a key no setting points at' => random_key(),
	'a retired setting\'s value in postgresql.conf' => 'retired-' . random_key());
write_key_file("$data/previous.key", $secret{'the previous key of part (a)'});
write_key_file("$data/world.key", $secret{'the key of a world-readable file'}, 0644);
write_key_file("$data/other.key", $secret{'a key no setting points at'});
# A file the server's user cannot open (mode 0000 passes the ownership and
# mode rules, as a root-owned 0600 file does: these tests cannot chown).
write_key_file("$data/unreadable.key", random_key(), 0000);

# One connection whose credentials every step below must still open.
my $kept = $node->safe_psql('secrets',
	q{SELECT connection_id FROM provider_connect('a0000000-0000-0000-0000-000000000001',
	    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x6b657074')});
my $kept_opens = "SELECT provider_credentials('$kept') = '\\x6b657074'::bytea";

###########################################################################
# (a) bad values at reload and at restart
###########################################################################

my $has_worker = $node->safe_psql('postgres',
	"SELECT count(*) FROM pg_settings WHERE name = 'provider_connections.worker_naptime'") eq '1';
note('the background worker settings do not exist in this build: their cases are skipped')
  unless $has_worker;

# Values other than the defaults, so "kept the old value" shows.
my $base_conf = slurp_file($conf_path);
my $good_conf = q{
provider_connections.encryption_key_previous_file = 'previous.key'
provider_connections.test_clock = '2026-01-02 03:04:05+00'
provider_connections.notify = 'commit'
provider_connections.notify_payload = 'ids'
};
$good_conf .= q{provider_connections.worker_databases = 'secrets'
provider_connections.worker_naptime = 2000
} if $has_worker;
write_file($conf_path, $base_conf . $good_conf);
$node->reload;
ok(wait_for_setting($node, 'provider_connections.notify_payload', 'ids'),
	'the good values are in effect');

my $retired_text = $secret{'a retired setting\'s value in postgresql.conf'};
# [setting, bad value as written in postgresql.conf, what it is]
my @cases = (
	[ 'encryption_key_file', q{'missing.key'}, 'a missing file' ],
	[ 'encryption_key_file', q{'world.key'}, 'a world-readable (0644) file' ],
	[ 'encryption_key_previous_file', q{'missing.key'}, 'a missing file' ],
	[ 'encryption_key_previous_file', q{'world.key'}, 'a world-readable (0644) file' ],
	[ 'encryption_key_file', q{'unreadable.key'}, 'a file the server cannot open (0000)' ],
	[ 'encryption_key_previous_file', q{'unreadable.key'}, 'a file the server cannot open (0000)' ],
	[ 'encryption_key', "'$retired_text'", 'the retired setting, any value' ],
	[ 'encryption_key_previous', "'$retired_text'", 'the retired setting, any value' ],
	[ 'test_clock', q{'tomorow'}, 'not a timestamp' ],
	[ 'test_clock', q{'13/01/2024 10:00'}, 'a DMY timestamp without offset' ],
	[ 'notify', q{'bogus'}, 'not one of the enum values' ],
	[ 'notify_payload', q{'bogus'}, 'not one of the enum values' ]);
push @cases,
  [ 'worker_databases', q{'"unterminated'}, 'an unterminated quoted name' ],
  [ 'worker_naptime', q{'-5'}, 'below the minimum' ]
  if $has_worker;

my %old;
for my $c (@cases)
{
	my $name = "provider_connections.$c->[0]";
	$old{$name} //= $node->safe_psql('postgres', "SHOW $name");
}
my $started_at = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my $session = $node->background_psql('secrets');

for my $c (@cases)
{
	my ($setting, $bad, $what) = @$c;
	my $name = "provider_connections.$setting";
	my $label = "$name = $what";
	# The retired setting's value is a secret: never in SQL text (the log
	# would have it from log_statement), so ALTER SYSTEM is tried with
	# another value there.
	my $sql_value = $setting =~ /^encryption_key(_previous)?$/ ? q{'x'} : $bad;

	# ALTER SYSTEM refuses the value (under DateStyle DMY for the clock,
	# where the 1.1 check hook let '13/01/2024 10:00' through).
	my ($ret, $out, $err) = $node->psql('postgres',
		"SET DateStyle = 'DMY'; ALTER SYSTEM SET $name = $sql_value");
	my $refused = ok($ret != 0, "$label: ALTER SYSTEM refuses it");
	diag("ALTER SYSTEM accepted $name = $sql_value; it stays in postgresql.auto.conf for this case")
	  unless $refused;

	# postgresql.conf gets it; a reload must keep the server and the old value.
	my $offset = log_size($node);
	write_file($conf_path, $base_conf . $good_conf . "$name = $bad\n");
	$node->reload;
	ok( wait_for_log_match(
			$node, qr/configuration file "[^"]*" contains errors/, $offset, 60),
		"$label: the reload reports the configuration file's error");
	my $log = log_since($node, $offset);
	unlike($log, qr/FATAL|PANIC|terminated by signal|database system is shut down/,
		"$label: nothing stops after the reload")
	  or diag("server log after the reload:\n$log");
	sql_is($node, 'postgres', 'SELECT pg_postmaster_start_time()', $started_at,
		"$label: the postmaster runs on and a new connection works");
	sql_is($node, 'postgres', "SHOW $name", $old{$name},
		"$label: a new session has the old value");
	sql_ok($node, 'secrets', "$label: a new session opens credentials", $kept_opens);
	my $in_session = eval { $session->query_safe("SHOW $name") } // "error: $@";
	is($in_session, $old{$name}, "$label: a session open across the reload has the old value");
	my $opens = eval { $session->query_safe($kept_opens) } // "error: $@";
	is($opens, 't', "$label: a session open across the reload opens credentials");

	# Back to the good configuration.
	$node->psql('postgres', "ALTER SYSTEM RESET $name") unless $refused;
	write_file($conf_path, $base_conf . $good_conf);
	$node->reload;
}
$session->quit;

# Restart with the bad values in postgresql.conf: settings the library
# defines are checked when it loads, and a bad one is a WARNING there.
# First every bad value but the key file lines, so calls have their key.
sub restart_with
{
	my ($extra, $label) = @_;
	my $offset = log_size($node);
	write_file($conf_path, $base_conf . $extra);
	$node->stop;
	my $up = $node->start(fail_ok => 1);
	ok($up, "$label: the server starts") or BAIL_OUT('the server no longer starts');
	return $offset;
}

my @startable = grep { $_->[0] !~ /_file$/ } @cases;
my %last_bad = map { ("provider_connections.$_->[0]" => $_->[1]) } @startable;
my $offset = restart_with($good_conf . join('', map { "$_ = $last_bad{$_}\n" } sort keys %last_bad),
	'restart with bad values');
my $log = log_since($node, $offset);
for my $name (sort keys %last_bad)
{
	like($log, qr/WARNING:[^\n]*\Q$name\E(?!\w)/, "restart: a WARNING names $name");
	my $bad = $last_bad{$name} =~ s/^'|'$//gr;
	my $now = $node->safe_psql('postgres', "SHOW $name");
	isnt($now, $bad, "restart: $name did not take the bad value ($now)");
}
sql_ok($node, 'secrets', 'restart: credentials open with the key file', $kept_opens);
sql_ok($node, 'secrets', 'restart: a connect works',
	q{SELECT ok FROM provider_connect('a0000000-0000-0000-0000-000000000002',
	    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')});

# Then a key file line that is refused too: the server starts without a key
# and calls fail cleanly.
$offset = restart_with(q{
provider_connections.encryption_key_file = 'missing.key'
provider_connections.encryption_key_previous_file = 'world.key'
}, 'restart with missing and world-readable key files');
$log = log_since($node, $offset);
like($log, qr/WARNING:[^\n]*provider_connections\.encryption_key_file/,
	'restart: a WARNING names encryption_key_file');
like($log, qr/WARNING:[^\n]*provider_connections\.encryption_key_previous_file/,
	'restart: a WARNING names encryption_key_previous_file');
sql_is($node, 'secrets',
	q{SELECT ok, error_code FROM provider_connect('a0000000-0000-0000-0000-000000000003',
	    'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')},
	'f|encryption_unavailable',
	'restart without a usable key file: a connect fails with encryption_unavailable');

restart_with('', 'restart with the original configuration');
sql_ok($node, 'secrets', 'back to the original configuration: credentials open', $kept_opens);

###########################################################################
# (b) the key never reaches the log
###########################################################################

my $user_b = 'b0000000-0000-0000-0000-000000000001';
my ($ret, $out, $err) = $node->psql('secrets', <<SQL, on_error_stop => 0);
SELECT connection_id AS c1 FROM provider_connect('$user_b', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
    'schwab', convert_to('{"access_token":"first"}', 'UTF8'), 'oauth2', now() + interval '1 hour', 'main') \\gset
SELECT connection_id AS c2 FROM provider_connect('$user_b', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
    'chase', '\\x02', 'api_key') \\gset
SELECT connection_id AS c3 FROM provider_connect('$user_b', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
    'fidelity', '\\x03') \\gset
SELECT provider_connect('$user_b', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\\x04')
  FROM generate_series(1, 4);
SELECT * FROM provider_refresh_tokens(:'c1', convert_to('{"access_token":"second"}', 'UTF8'),
    now() + interval '2 hours');
SELECT provider_credentials(:'c1');
SELECT * FROM provider_disconnect('$user_b', :'c2');
-- failures: results, not errors
SELECT * FROM provider_refresh_tokens(:'c2', '\\x01');
SELECT * FROM provider_disconnect('b0000000-0000-0000-0000-000000000099', :'c1');
SELECT * FROM provider_connect(NULL, NULL, NULL, NULL);
SELECT * FROM provider_connect('$user_b', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', '', '\\x01');
SELECT * FROM provider_refresh_tokens(gen_random_uuid(), '\\x01');
SELECT provider_credentials(gen_random_uuid());
SQL
note("the session of calls said:\n$out\n$err");

# key_file_is(VALUE): the key file setting through ALTER SYSTEM (the only
# way besides postgresql.conf), once new sessions have it.
sub key_file_is
{
	my ($value) = @_;
	$node->safe_psql('postgres',
		defined $value
		? "ALTER SYSTEM SET provider_connections.encryption_key_file = '$value'"
		: 'ALTER SYSTEM RESET provider_connections.encryption_key_file');
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	wait_for_setting($node, 'provider_connections.encryption_key_file',
		$value // 'provider_connections.key')
	  or BAIL_OUT('the key file setting did not take ' . ($value // 'its reset'));
	return;
}
my $sealed_main = "(SELECT id FROM provider_connections WHERE user_id = '$user_b' AND alias = 'main')";
my $sealed_fidelity = "(SELECT id FROM provider_connections WHERE user_id = '$user_b' AND provider_slug = 'fidelity')";
my ($r2, $o2, $e2);
key_file_is('');
($r2, $o2, $e2) = $node->psql('secrets',
	"SELECT * FROM provider_connect('$user_b', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\\x05')");
$out .= "\n$o2"; $err .= "\n$e2";
# a key that did not seal them: an error
key_file_is('other.key');
($r2, $o2, $e2) = $node->psql('secrets', "SELECT provider_credentials($sealed_main)");
$out .= "\n$o2"; $err .= "\n$e2";
key_file_is(undef);
# tampered credentials (byte 30 flipped, never left as it was): pgcrypto's error
($r2, $o2, $e2) = $node->psql('secrets', <<SQL, on_error_stop => 0);
UPDATE provider_connections
   SET encrypted_credentials = set_byte(encrypted_credentials, 29, get_byte(encrypted_credentials, 29) # 255)
 WHERE id = $sealed_fidelity;
SELECT provider_credentials($sealed_fidelity);
SELECT * FROM provider_disconnect('$user_b', $sealed_fidelity);
SQL
$out .= "\n$o2"; $err .= "\n$e2";
note("the calls after the key changes said:\n$out\n$err");
like($err, qr/ERROR:  provider credentials were sealed with a key that is not configured/,
	'a key that did not seal the credentials raises an error');
like($err, qr/Wrong key or corrupt data/, 'tampered credentials raise pgcrypto\'s error');
sql_is($node, 'secrets',
	"SELECT count(*) FILTER (WHERE event_type LIKE '%Failed') > 4,
	        count(*) FILTER (WHERE event_type LIKE '%Succeeded') > 8
	   FROM provider_audit_log
	  WHERE user_id IN ('$user_b', '00000000-0000-0000-0000-000000000000')",
	't|t', 'the session recorded its successes and its failures (an event without a user has the nil UUID in provider_audit_log)');

# Rotation, as the README says: write the new key file, point the settings
# at the new and the old file, reload, rotate until none remain, drop the
# old file's setting, reload.
write_key_file("$data/rotated.key", $secret{'the rotated key'});
$offset = log_size($node);
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET provider_connections.encryption_key_file = 'rotated.key';
	ALTER SYSTEM SET provider_connections.encryption_key_previous_file = 'provider_connections.key';
	SELECT pg_reload_conf();});
ok(wait_for_setting($node, 'provider_connections.encryption_key_previous_file',
		'provider_connections.key'), 'rotation: the reload reached the server');
like(log_since($node, $offset),
	qr/parameter "provider_connections\.encryption_key_file" changed to "rotated\.key"/,
	'rotation: the reload logs the new path (so the log records reloads; a path, not a key)');
my ($batches, $nulls, $remaining) = (0, 0, '');
while ($batches < 1000)
{
	$remaining = $node->safe_psql('secrets',
		'SELECT remaining FROM provider_rotate_credentials(2)');
	$batches++;
	# NULL after a full batch: call again.
	$nulls++ if $remaining eq '';
	last if $remaining eq '0';
}
is($remaining, '0', "rotation: done in $batches batches of 2 ($nulls full ones)");
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET provider_connections.encryption_key_previous_file;
	SELECT pg_reload_conf();});
ok(wait_for_setting($node, 'provider_connections.encryption_key_previous_file', ''),
	'rotation: the previous key file is dropped');
sql_ok($node, 'secrets', 'rotation: every credential opens with the rotated key alone',
	q{SELECT count(*) > 5 AND bool_and(provider_credentials(id) IS NOT NULL)
	    FROM provider_connections WHERE encrypted_credentials IS NOT NULL});
sql_ok($node, 'secrets', 'rotation: the refreshed credentials are what was stored',
	"SELECT provider_credentials(id) = convert_to('{\"access_token\":\"second\"}', 'UTF8')
	   FROM provider_connections WHERE user_id = '$user_b' AND alias = 'main'");

# The retired settings refuse any value and never quote it. The attempt's
# text is in the statement itself, so log_statement logs it (PostgreSQL
# logs every statement's text); it must appear nowhere else.
my $attempt = 'set-attempt-' . random_key();
for my $sql (
	"SET provider_connections.encryption_key = '$attempt'",
	"SET provider_connections.encryption_key_previous = '$attempt'",
	"ALTER SYSTEM SET provider_connections.encryption_key = '$attempt'",
	"ALTER SYSTEM SET provider_connections.encryption_key_previous = '$attempt'")
{
	my ($r, $o, $e) = $node->psql('secrets', $sql);
	my $short = $sql =~ s/'[^']*'/'...'/r;
	ok($r != 0, "$short: refused");
	like($e, qr/provider_connections\.encryption_key/, "$short: the error names the setting");
	unlike($e, qr/\Q$attempt\E/, "$short: the error does not quote the value");
}

# What a monitoring role reads.
$node->safe_psql('postgres', 'CREATE ROLE monitor LOGIN IN ROLE pg_monitor');
my $settings = $node->safe_psql('postgres',
	q{SET ROLE monitor;
	  SELECT name || ' = ' || setting FROM pg_settings WHERE name LIKE 'provider_connections.%'});
like($settings, qr/provider_connections\.encryption_key_file = rotated\.key/,
	'pg_monitor (pg_read_all_settings) reads the key file setting: a path');
for my $what (sort keys %secret)
{
	unlike($settings, qr/\Q${\ substr($secret{$what}, 0, 24)}\E/,
		"pg_monitor's pg_settings do not hold $what");
}

###########################################################################
# (c) bind parameters and auto_explain
###########################################################################

my $work = PostgreSQL::Test::Utils::tempdir;
append_to_file("$work/connect.sql",
	"SELECT ok FROM provider_connect(:user::uuid, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', convert_to(:cred, 'UTF8'));\n"
);
append_to_file("$work/connect_then_fail.sql",
	"SELECT 1 / 0 FROM provider_connect(:user::uuid, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', convert_to(:cred, 'UTF8'));\n"
);

# set_logging(SETTING => VALUE, ...): ALTER SYSTEM, reload, and wait until
# new sessions have the values.
sub set_logging
{
	my (%values) = @_;
	my $sql = '';
	for my $name (sort keys %values)
	{
		$sql .= defined $values{$name}
		  ? "ALTER SYSTEM SET $name = '$values{$name}';\n"
		  : "ALTER SYSTEM RESET $name;\n";
	}
	$node->safe_psql('postgres', $sql . 'SELECT pg_reload_conf();');
	for my $name (sort keys %values)
	{
		my $want = $values{$name} // $node->safe_psql('postgres',
			"SELECT boot_val FROM pg_settings WHERE name = '$name'");
		wait_for_setting($node, $name, $want) or BAIL_OUT("$name did not become $want");
	}
	return;
}

# bind_run(LABEL, SCRIPT, PGOPTIONS): pgbench, extended protocol, three
# transactions passing a fresh plaintext credential as a bind parameter.
# Returns (plaintext, user, log written meanwhile, pgbench exit code).
my $run = 0;
sub bind_run
{
	my ($label, $script, $pgoptions) = @_;
	$run++;
	my $plain = random_key() . "-plaintext-credential-$run";
	my $user = sprintf('c0000000-0000-0000-0000-%012d', $run);
	my $offset = log_size($node);
	local $ENV{PGOPTIONS} = $pgoptions if defined $pgoptions;
	my ($ret, $out) = run_pgbench($node, 'secrets', 60, '-n', '-t', '3', '-M', 'extended',
		'-D', "cred=$plain", '-D', "user=$user", '-f', "$work/$script");
	note("$label: pgbench said:\n$out");
	# The server logs a statement before pgbench sees its result; a new
	# session's statement after that marks the end of what the run logged.
	my $marker = "end of run $run";
	$node->safe_psql('postgres', "SELECT '$marker'");
	wait_for_log_match($node, qr/\Q$marker\E/, $offset, 60);
	return ($plain, $user, log_since($node, $offset), $ret);
}

sub leaks
{
	my ($log, $plain) = @_;
	# the text, its random start, or its start in hex (as a bytea prints)
	my $start = substr($plain, 0, 24);
	my $hex = unpack('H*', $start);
	return $log =~ /\Q$plain\E|\Q$start\E|$hex/i;
}

# The recommended settings.
set_logging(log_parameter_max_length => 0, log_parameter_max_length_on_error => 0);
my ($plain, $user, $runlog, $rc) = bind_run('recommended settings', 'connect.sql');
is($rc, 0, 'recommended settings: pgbench ran');
my $opened = $node->safe_psql('secrets',
	"SELECT string_agg(DISTINCT convert_from(provider_credentials(id), 'UTF8'), ',')
	   FROM provider_connections WHERE user_id = '$user'");
is($opened, $plain, 'recommended settings: the credentials sent as a parameter were stored');
like($runlog, qr/execute <unnamed>: SELECT ok FROM provider_connect\(\$1::uuid/,
	'recommended settings: log_statement logs the statement (with $1)');
ok(!leaks($runlog, $plain), 'recommended settings: the plaintext credential is not in the log');

($plain, $user, $runlog, $rc) = bind_run('recommended settings, failing statement',
	'connect_then_fail.sql');
like($runlog, qr/ERROR:  division by zero/, 'recommended settings: the failing statement failed');
ok(!leaks($runlog, $plain),
	'recommended settings: the plaintext credential of a failing statement is not in the log');

# The contrast: PostgreSQL's defaults log bind parameters.
set_logging(log_parameter_max_length => undef, log_parameter_max_length_on_error => undef);
($plain, $user, $runlog, $rc) = bind_run('default log_parameter_max_length', 'connect.sql');
ok(leaks($runlog, $plain),
	'log_parameter_max_length = -1 (the default) logs the plaintext: the test sees a leak when there is one');
set_logging(log_parameter_max_length => 0, log_parameter_max_length_on_error => -1);
($plain, $user, $runlog, $rc) = bind_run('log_parameter_max_length_on_error = -1',
	'connect_then_fail.sql');
ok(leaks($runlog, $plain),
	'log_parameter_max_length_on_error = -1 logs the plaintext of a failing statement');
set_logging(log_parameter_max_length => 0, log_parameter_max_length_on_error => 0);

# auto_explain: every plan, nested ones included, verbose.
SKIP:
{
	skip 'auto_explain is not installed', 9 unless $have_auto_explain;
	my $explain = '-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=0'
	  . ' -c auto_explain.log_nested_statements=on';

	# sealed_in(LOG, USER): the sealed values of USER's connections found in LOG.
	my $sealed_in = sub {
		my ($log, $user) = @_;
		my @sealed = split /\n/, $node->safe_psql('secrets',
			"SELECT encode(encrypted_credentials, 'hex') FROM provider_connections
			  WHERE user_id = '$user' AND encrypted_credentials IS NOT NULL");
		return (scalar(@sealed), grep {
			my $hex = $_;
			# past the 7-byte header (which names the key, the same for all)
			$log =~ /\Q$hex\E|\Q${\ substr($hex, 14, 40)}\E/i
		} @sealed);
	};

	($plain, $user, $runlog, $rc) = bind_run('auto_explain verbose', 'connect.sql',
		"$explain -c auto_explain.log_verbose=on");
	is($rc, 0, 'auto_explain verbose: pgbench ran');
	like($runlog, qr/Query Text: INSERT INTO/,
		'auto_explain verbose: our nested statements\' plans are logged');
	my ($count, @found) = $sealed_in->($runlog, $user);
	ok($count == 3 && !@found,
		"auto_explain verbose: none of the $count sealed values is in the log");
	# The caller's own statement is planned with its parameter values (an
	# unnamed statement gets a custom plan), so a verbose plan of it may show
	# them; no plan of ours may.
	my @entries = split /\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)/, $runlog;
	my @showing = grep { leaks($_, $plain) } @entries;
	my @not_callers = grep { !/Query Text: SELECT ok FROM provider_connect\(\$1::uuid/ } @showing;
	is(scalar(@not_callers), 0,
		'auto_explain verbose: the plaintext shows in no plan but the caller\'s own statement\'s ('
		  . scalar(@showing) . ' log entries of the caller show it)')
	  or diag(join("\n----\n", @not_callers));

	# The README's other remedy: generic plans for the caller's role too.
	($plain, $user, $runlog, $rc) = bind_run('auto_explain verbose, generic plans', 'connect.sql',
		"$explain -c auto_explain.log_verbose=on -c plan_cache_mode=force_generic_plan");
	like($runlog, qr/Function Call: provider_connect\(\$1, /,
		'auto_explain verbose, plan_cache_mode = force_generic_plan: the caller\'s plan shows $n');
	($count, @found) = $sealed_in->($runlog, $user);
	ok($count == 3 && !@found,
		"auto_explain verbose, plan_cache_mode = force_generic_plan: none of the $count sealed values is in the log");
	ok(!leaks($runlog, $plain),
		'auto_explain verbose, plan_cache_mode = force_generic_plan: the plaintext credential is not in the log');

	($plain, $user, $runlog, $rc) = bind_run('auto_explain not verbose', 'connect.sql',
		"$explain -c auto_explain.log_verbose=off");
	($count, @found) = $sealed_in->($runlog, $user);
	ok($count == 3 && !@found,
		"auto_explain, log_verbose = off: none of the $count sealed values is in the log");
	ok(!leaks($runlog, $plain),
		'auto_explain, log_verbose = off: the plaintext credential is not in the log');
}

###########################################################################
# (b) continued: the whole log, and pg_stat_statements
###########################################################################

my $whole = log_since($node, 0);
like($whole, qr/ERROR:  provider credentials were sealed with a key that is not configured/,
	'the log holds the session\'s errors (the grep reads the right log)');
for my $what (sort keys %secret)
{
	my $text = $secret{$what};
	ok($whole !~ /\Q${\ substr($text, 0, 24)}\E/ && $whole !~ /${\ unpack('H*', substr($text, 0, 24))}/,
		"the server log does not hold $what");
}
my @attempt_lines = grep { /\Q$attempt\E/ } split /\n/, $whole;
ok(scalar(@attempt_lines) >= 4, 'the retired-setting attempts are in the log (log_statement)');
my @elsewhere = grep { !/(?:LOG:  statement: |STATEMENT:  )(?:ALTER SYSTEM )?SET provider_connections\.encryption_key/ }
  @attempt_lines;
is(scalar(@elsewhere), 0,
	'the attempted value appears only as the text of the statements that tried it')
  or diag(join("\n", @elsewhere));

SKIP:
{
	skip 'pg_stat_statements is not installed', 2 + scalar(keys %secret) unless $have_pgss;
	my $queries = $node->safe_psql('secrets', 'SELECT query FROM pg_stat_statements');
	like($queries, qr/provider_rotate_credentials/,
		'pg_stat_statements recorded the session');
	for my $what (sort keys %secret)
	{
		unlike($queries, qr/\Q${\ substr($secret{$what}, 0, 24)}\E/,
			"pg_stat_statements does not hold $what");
	}
	unlike($queries, qr/\Q$attempt\E/,
		'pg_stat_statements does not hold the refused SET of a retired setting');
}

my @crashes = crash_lines($node, 0);
is(scalar(@crashes), 0, 'no backend crashed')
  or diag(join("\n", 'the server log reports:', @crashes));

$node->stop;
done_testing();
