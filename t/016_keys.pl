# t/016_keys.pl: how a backend loads, keeps and forgets the key.
#
# (a) A failed key load is retried by the next call of the same session:
#     the key file moved away and back, and a key command cancelled by
#     statement_timeout (a connection pool keeps such sessions for hours).
# (b) A refused statement about a key setting is not logged with its text,
#     at PostgreSQL's default logging settings: an operator following 1.1's
#     documentation runs ALTER SYSTEM SET provider_connections.encryption_key
#     = '<key>', and log_min_error_statement = error would log it.
# (c) After sealing and opening, the backend's memory holds the key exactly
#     once: the copy keys.c keeps by design. The copies handed to pgcrypto
#     (crypto.c) are wiped; read from /proc/<pid>/mem as the server's user.
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

# The longest key accepted (1023 characters and a newline: a key file is
# read up to 1024 bytes): the text copy crypto.c makes of it (1027 bytes)
# is then larger than the 1024-byte chunks that most allocations of a call
# reuse, so a copy left unwiped stays whole and is found, rather than
# overwritten by chance as a short key's copy is.
my $node = pc_node('keys', key => substr(join('', map { random_key() } 1 .. 11), 0, 1023));
fresh_db($node, 'keys');
my $data = $node->data_dir;
my $key = key_of($node);

my $connect = q{SELECT CASE WHEN ok THEN 't' ELSE 'f' END || '|' || coalesce(error_code, '')
  FROM provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')};

# conf_is(TEXT): postgresql.conf's key lines are TEXT; reload and wait until
# new sessions show the file setting the text names.
my $conf_path = "$data/postgresql.conf";
my $base_conf = slurp_file($conf_path);
sub conf_is
{
	my ($text, $file_setting) = @_;
	write_file($conf_path, $base_conf . $text);
	$node->reload;
	wait_for_setting($node, 'provider_connections.encryption_key_file', $file_setting)
	  or BAIL_OUT("the reload did not take encryption_key_file = '$file_setting'");
	return;
}

###########################################################################
# (a) a failed load is retried
###########################################################################

# One session (psql reading a script: \! runs between its statements).
my ($ret, $out, $err) = $node->psql('keys', <<SQL, on_error_stop => 0);
\\! mv '$data/provider_connections.key' '$data/provider_connections.key.away'
$connect;
\\! mv '$data/provider_connections.key.away' '$data/provider_connections.key'
$connect;
SQL
is($out, "f|encryption_unavailable\nt|",
	'key file moved away: a call fails with encryption_unavailable; moved back: the next call of the same session works, without a reload')
  or diag("stderr: $err");

# A key command that hangs while a flag file exists, then prints the key.
my $flag = "$data/key_command_hangs";
my $command = "$data/key_command.sh";
write_file($command, qq{#!/bin/sh
if [ -e '$flag' ]; then sleep 60; fi
cat '$data/provider_connections.key'
}, 0700);
conf_is(qq{provider_connections.encryption_key_file = ''
provider_connections.encryption_key_command = '$command'
}, '');
($ret, $out, $err) = $node->psql('keys', <<SQL, on_error_stop => 0);
\\! touch '$flag'
SET statement_timeout = '1s';
$connect;
\\! rm '$flag'
RESET statement_timeout;
$connect;
SQL
like($err, qr/canceling statement due to statement timeout/,
	'the key command hangs: statement_timeout cancels the call');
is($out, 't|', 'the next call of the same session runs the key command again and works')
  or diag("stderr: $err");
conf_is('', 'provider_connections.key');

###########################################################################
# (b) refused key statements are not logged with their text
###########################################################################

my $offset = log_size($node);
my %attempt = map { ($_ => "$_-" . random_key()) } qw(current previous file role database function);
my @statements = (
	"ALTER SYSTEM SET provider_connections.encryption_key = '$attempt{current}'",
	"SET provider_connections.encryption_key = '$attempt{current}'",
	"ALTER SYSTEM SET provider_connections.encryption_key_previous = '$attempt{previous}'",
	"SET provider_connections.encryption_key_previous = '$attempt{previous}'",
	"SET provider_connections.encryption_key_file = '$attempt{file}'",
	"ALTER ROLE CURRENT_USER SET provider_connections.encryption_key = '$attempt{role}'",
	"ALTER DATABASE keys SET provider_connections.encryption_key_previous = '$attempt{database}'",
	"CREATE FUNCTION f() RETURNS int LANGUAGE sql SET provider_connections.encryption_key = '$attempt{function}' AS 'SELECT 1'");
for my $sql (@statements)
{
	my ($r, $o, $e) = $node->psql('keys', $sql);
	my $short = $sql =~ s/'[^']*'/'...'/r;
	ok($r != 0, "$short: refused");
	like($e, qr/provider_connections\.encryption_key/, "$short: the error names the setting");
}
# An error about something else keeps its statement (the hook is narrow).
$node->psql('keys', q{SELECT 'statement kept' / 0});
ok(wait_for_log_match($node, qr/STATEMENT:  SELECT 'statement kept' \/ 0/, $offset),
	'the statement of an unrelated error is still logged');
my $log = log_since($node, $offset);
my @errors = $log =~ /ERROR:  [^\n]*provider_connections\.encryption_key/g;
is(scalar(@errors), scalar(@statements), 'each refusal is logged as an ERROR')
  or diag($log);
for my $what (sort keys %attempt)
{
	unlike($log, qr/\Q$attempt{$what}\E|\Q${\ substr($attempt{$what}, 0, 24)}\E/,
		"the log does not hold the value of the $what attempt");
}

###########################################################################
# (c) no stray copy of the key in the backend's memory
###########################################################################

# occurrences(PID, PATTERNS...): how often each pattern occurs in the
# writable memory of process PID (anonymous, heap, stack and shared
# mappings: file-backed read-only ones cannot hold what the backend
# computed). undef when /proc/PID/mem cannot be read (e.g. Yama's
# ptrace_scope).
sub occurrences
{
	my ($pid, @patterns) = @_;
	open(my $maps, '<', "/proc/$pid/maps") or return undef;
	open(my $mem, '<:raw', "/proc/$pid/mem") or return undef;
	my @count = (0) x @patterns;
	my $longest = 0;
	$longest < length($_) and $longest = length($_) for @patterns;
	my $read_any = 0;
	while (my $line = <$maps>)
	{
		my ($start, $end, $perms) = $line =~ /^([0-9a-f]+)-([0-9a-f]+) (\S+)/ or next;
		next unless $perms =~ /^rw/;
		my ($from, $to) = (hex($start), hex($end));
		my $carry = '';
		for (my $at = $from; $at < $to; $at += 1 << 20)
		{
			my $len = $to - $at < (1 << 20) ? $to - $at : 1 << 20;
			sysseek($mem, $at, 0) or last;
			my $got = sysread($mem, my $buf, $len);
			last unless $got;
			$read_any = 1;
			my $window = $carry . $buf;
			for my $i (0 .. $#patterns)
			{
				my $pos = 0;
				while (($pos = index($window, $patterns[$i], $pos)) >= 0)
				{
					# a match inside the carried tail was counted already
					$count[$i]++ if $pos + length($patterns[$i]) > length($carry);
					$pos++;
				}
			}
			$carry = substr($window, -($longest - 1));
		}
	}
	return $read_any ? \@count : undef;
}

my $session = $node->background_psql('keys');
my $pid = $session->query_safe('SELECT pg_backend_pid()');
# Seal (connect, refresh) and open (provider_credentials) several times.
is( $session->query_safe(q{
	SELECT count(*) FILTER (WHERE (provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
	                                                'schwab', '\x0102')).ok)
	  FROM generate_series(1, 20)}),
	'20', 'credentials sealed in one backend');
my $sealed = $session->query_safe(
	'SELECT count(*) FROM provider_connections WHERE encrypted_credentials IS NOT NULL');
is($session->query_safe(q{
	SELECT count(*) FILTER (WHERE (provider_refresh_tokens(id, '\x03')).ok)
	  FROM provider_connections WHERE encrypted_credentials IS NOT NULL}),
	$sealed, 'each re-sealed by a refresh');
is($session->query_safe(q{
	SELECT count(*) FILTER (WHERE provider_credentials(id) = '\x03')
	  FROM provider_connections WHERE encrypted_credentials IS NOT NULL}),
	$sealed, 'and opened');
# The last call seals: its copy is the one a missing wipe leaves behind.
is($session->query_safe(q{SELECT ok FROM provider_connect(gen_random_uuid(),
	'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x04')}), 't', 'a last call seals');

# The key as keys.c keeps it (malloc'd, NUL-terminated: one copy), as the
# text datum crypto.c hands pgcrypto (a 4-byte varlena header, then the
# key), and its last 64 bytes (in case a later allocation overwrote the
# start of a freed copy). Measured with the wipe in pc_seal removed: the
# key twice, the text datum once; in pc_open removed: the same.
my $as_text = pack('V', (4 + length($key)) << 2) . $key;
my $tail = substr($key, -64);
my $count = occurrences($pid, $key, $as_text, $tail);
SKIP:
{
	skip "/proc/$pid/mem cannot be read here (ptrace restrictions)", 3 unless defined $count;
	note("occurrences of the key: $count->[0]; as a text datum: $count->[1]; of its tail: $count->[2]");
	is($count->[0], 1, 'the backend holds the key once (its cache) after sealing and opening');
	is($count->[1], 0, 'no whole unwiped text copy of the key handed to pgcrypto');
	is($count->[2], 1, 'no remnant of an unwiped copy: the key\'s tail is in the cache only');
}
$session->quit;

$node->stop;
done_testing();
