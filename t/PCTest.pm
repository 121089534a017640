# t/PCTest.pm: what the TAP tests of provider_connections share.
#
# Each test makes its own clusters with PostgreSQL::Test::Cluster: the
# library preloaded, its own key file (0600, in the data directory) and
# log_statement off unless the test asks for more. The helpers never sleep
# for correctness: they poll with PostgreSQL::Test::Utils' default timeout.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
package PCTest;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(pc_node random_key write_key_file key_of fresh_db sql_ok
  sql_is log_size log_since crash_lines run_pgbench pgbench_script_count
  wait_for_setting wait_for_log_match write_file);

# random_key(): 96 hex characters from /dev/urandom.
sub random_key
{
	open my $fh, '<:raw', '/dev/urandom' or die "/dev/urandom: $!";
	read($fh, my $bytes, 48) == 48 or die "short read from /dev/urandom";
	close $fh;
	return unpack('H*', $bytes);
}

# write_key_file(PATH, KEY[, MODE]): a key file as an operator writes it,
# owned by us (the server's user), 0600 unless MODE says otherwise.
sub write_key_file
{
	my ($path, $key, $mode) = @_;
	open my $fh, '>', $path or die "could not write $path: $!";
	print $fh "$key\n";
	close $fh;
	chmod($mode // 0600, $path) or die "chmod $path: $!";
	return;
}

# key_of(NODE[, FILE]): the key held in a key file of NODE's data directory.
sub key_of
{
	my ($node, $file) = @_;
	my $key = slurp_file($node->data_dir . '/' . ($file // 'provider_connections.key'));
	chomp $key;
	return $key;
}

# pc_node(NAME, %opts): an initialised and started cluster with the library
# preloaded and provider_connections.encryption_key_file pointing at a key
# file in its data directory.
#   key     => the key (random by default)
#   preload => shared_preload_libraries (default 'provider_connections')
#   conf    => more postgresql.conf lines
#   start   => 0 to leave it stopped
sub pc_node
{
	my ($name, %opts) = @_;
	BAIL_OUT('the TAP tests cannot run as root (initdb refuses it): run make installcheck '
		  . 'as another user, or scripts/test.sh, which runs them as postgres')
	  if $> == 0;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	write_key_file($node->data_dir . '/provider_connections.key',
		$opts{key} // random_key());
	my $preload = $opts{preload} // 'provider_connections';
	# Cluster.pm turns log_statement on; a load test would mostly write its log.
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = '$preload'
provider_connections.encryption_key_file = 'provider_connections.key'
max_prepared_transactions = 10
log_statement = none
});
	$node->append_conf('postgresql.conf', $opts{conf}) if defined $opts{conf};
	$node->start unless defined $opts{start} && !$opts{start};
	return $node;
}

# fresh_db(NODE, DB): a new database with the extension.
sub fresh_db
{
	my ($node, $db) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION provider_connections CASCADE');
	return;
}

# sql_ok(NODE, DB, NAME, SQL): SQL returns the single value t. On any other
# outcome the failure shows what came back, stderr included.
sub sql_ok
{
	my ($node, $db, $name, $sql) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) = $node->psql($db, $sql);
	my $ok = ok($ret == 0 && $out eq 't', $name);
	diag("query: $sql\nexit code: $ret\nstdout: $out\nstderr: $err") unless $ok;
	return $ok;
}

# sql_is(NODE, DB, SQL, EXPECTED, NAME): SQL's output is EXPECTED.
sub sql_is
{
	my ($node, $db, $sql, $expected, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) = $node->psql($db, $sql);
	my $ok = is($out, $expected, $name);
	diag("query: $sql\nexit code: $ret\nstderr: $err") unless $ok;
	return $ok;
}

# log_size(NODE): where the server log ends now, for log_since.
sub log_size
{
	my ($node) = @_;
	return -s $node->logfile // 0;
}

# log_since(NODE, OFFSET): the server log written after OFFSET.
sub log_since
{
	my ($node, $offset) = @_;
	return slurp_file($node->logfile, $offset // 0);
}

# crash_lines(NODE, OFFSET): the log lines after OFFSET that report a
# crashed backend, a PANIC or a failed assertion.
sub crash_lines
{
	my ($node, $offset) = @_;
	return grep { /terminated by signal|PANIC|TRAP:/ }
	  split /\n/, log_since($node, $offset);
}

# run_pgbench(NODE, DB, TIMEOUT, ARGS...): runs pgbench against NODE, at
# most TIMEOUT seconds. Returns (exit code or undef on timeout, output).
sub run_pgbench
{
	my ($node, $db, $timeout, @args) = @_;
	my $out = '';
	my @cmd = ('pgbench', '-h', $node->host, '-p', $node->port, @args, $db);
	my $ret;
	eval {
		IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>&1',
			IPC::Run::timeout($timeout));
		$ret = $? >> 8;
	};
	if ($@)
	{
		$out .= "\n(pgbench: $@)";
		$ret = undef;
	}
	return ($ret, $out);
}

# pgbench_script_count(OUTPUT, N): the transactions pgbench counted for its
# Nth script ("SQL script N: ...", "- weight: ...", "- <count> transactions").
sub pgbench_script_count
{
	my ($out, $n) = @_;
	return $1 if $out =~ /^SQL script $n:.*?^ - (\d+) transactions /ms;
	return undef;
}

# wait_for_log_match(NODE, REGEXP, OFFSET[, SECONDS]): polls until the
# server log after OFFSET matches REGEXP; false after SECONDS (default
# PostgreSQL::Test::Utils' timeout) instead of dying as wait_for_log does.
sub wait_for_log_match
{
	my ($node, $re, $offset, $seconds) = @_;
	my $deadline = time + ($seconds // $PostgreSQL::Test::Utils::timeout_default);
	while (1)
	{
		return 1 if log_since($node, $offset) =~ $re;
		return 0 if time > $deadline;
		usleep(100_000);
	}
}

# write_file(PATH, TEXT[, MODE]): replaces PATH's contents (0600 by default,
# as Cluster.pm keeps postgresql.conf).
sub write_file
{
	my ($path, $text, $mode) = @_;
	open my $fh, '>', $path or die "could not write $path: $!";
	print $fh $text;
	close $fh;
	chmod($mode // 0600, $path) or die "chmod $path: $!";
	return;
}

# wait_for_setting(NODE, NAME, VALUE): polls until a new session shows
# VALUE for NAME (a reload has reached the postmaster).
sub wait_for_setting
{
	my ($node, $name, $value) = @_;
	return $node->poll_query_until('postgres', "SHOW $name", $value);
}

1;
