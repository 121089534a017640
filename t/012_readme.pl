# t/012_readme.pl: the README's SQL, run as written. Each ```sql block of
# README.md is taken from the file itself (so an edit there is tested
# here), and run where it belongs: Install and Getting started on a fresh
# database (the example ids, written "01a204b9-...", stand for the id the
# connect returned); the Security model's grants, with its roles created;
# the refresh worker's loop as provider_worker, its psql variables set to a
# claimed connection; Key rotation, its shell steps and its SQL, over two
# databases. Operations
# (pg_cron) is run by t/011_cron.pl, its Monitoring by t/017_exporter.pl, Logical replication by
# t/010_replication.pl.
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

my $readme = slurp_file("$FindBin::RealBin/../README.md");

# section(HEADING): the text of a README section, up to the next heading
# of the same or a higher level.
sub section
{
	my ($heading) = @_;
	my ($level, $title) = $heading =~ /^(#+) (.*)$/;
	my ($text) = $readme =~ /^\Q$heading\E\n(.*?)(?=^#{1,@{[length $level]}} |\z)/ms;
	BAIL_OUT("README.md has no section \"$heading\"") unless defined $text;
	return $text;
}

# sql_blocks(TEXT): the ```sql blocks in TEXT, indented ones included.
sub sql_blocks
{
	my ($text) = @_;
	my @blocks;
	while ($text =~ /^( *)```sql\n(.*?)^\1```/msg)
	{
		my ($indent, $body) = ($1, $2);
		$body =~ s/^$indent//mg;
		push @blocks, $body;
	}
	return @blocks;
}

# blocks(HEADING, N): the N ```sql blocks of a README section that this
# test runs, all of them: a block added to the section fails here until
# this test runs it too (see the inventory at the end).
my %ran_here;
sub blocks
{
	my ($heading, $n) = @_;
	my @b = sql_blocks(section($heading));
	is(scalar @b, $n, "$heading has $n SQL block(s), all run here");
	$ran_here{$heading} = scalar @b;
	return @b;
}

my $node = pc_node('readme');
$node->safe_psql('postgres', 'CREATE DATABASE app');

# Install, then Getting started.
my ($install) = blocks('## Install', 1);
ok($install, 'Install has its SQL');
$node->safe_psql('app', $install);
is($node->safe_psql('app', q{SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension
                              WHERE extname <> 'plpgsql'}),
	'pgcrypto,provider_connections', 'Install: the extension and pgcrypto');

my ($start) = blocks('## Getting started', 1);
ok($start, 'Getting started has its SQL');
my @statements = grep { /\S/ } map { s/^--.*$//mgr } split /;\s*\n/, $start;
is(scalar @statements, 5, 'Getting started: five statements');
my $connect = shift @statements;
my $id = $node->safe_psql('app', "SELECT connection_id FROM ($connect) r");
like($id, qr/^01[0-9a-f]{6}-/, "connect returned a UUIDv7 ($id)");
my @expect = ('t', '{"access_token":"..."}', 't', 'f|not_active');
my @what = ('refresh', 'credentials', 'disconnect', 'a failure is a result');
for my $i (0 .. $#statements)
{
	(my $sql = $statements[$i]) =~ s/'01a204b9-\.\.\.'/'$id'/g;
	$sql =~ s/^\s+//;
	# A result row: ok, or f and the code; the credentials: as text.
	my $query = $sql =~ s/^SELECT \* FROM //
	  ? "SELECT CASE WHEN r.ok THEN 't' ELSE 'f|' || r.error_code END FROM $sql r"
	  : "SELECT convert_from(" . ($sql =~ s/^SELECT //r) . ", 'UTF8')";
	my $got = $node->safe_psql('app', $query);
	is($got, $expect[$i], "Getting started, $what[$i]");
}

# The Security model's roles and grants, as written: the block creates
# the roles it grants to.
my ($grants) = blocks('## Security model', 1);
ok($grants, 'Security model has its grants');
my @roles = do { my %seen; grep { !$seen{$_}++ } $grants =~ /\bTO (\w+);/g };
is(join(',', sort @roles), 'app,mailer,provider_maintenance,provider_worker', 'the roles it grants to');
$node->safe_psql('app', $grants);
# The application can read the feed's head, for the lag query of Operations.
is($node->safe_psql('app', 'SET ROLE app; SELECT provider_feed_head() >= 0'), 't',
	'app may call provider_feed_head()');

# The refresh worker's loop, as provider_worker, on a connection expiring soon.
$node->safe_psql('app', q{
SELECT provider_connect('12121212-1212-1212-1212-121212121212', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
                        'schwab', '\x01', 'oauth2', now() + interval '2 minutes', 'soon') FROM generate_series(1, 3)});
my ($loop) = blocks('## Refresh workers', 1);
ok($loop, 'Refresh workers has its loop');
my ($claim, $renew, $refresh, $revoke, $failure, $release) = grep { /\S/ } map { s/^--.*$//mgr } split /;[^\n]*\n/, $loop;
ok($release, 'the loop has its six statements');
my @claimed = map { [ split /\|/ ] } split /\n/,
  $node->safe_psql('app', "SET ROLE provider_worker; SELECT connection_id, lease_token FROM ($claim) c");
is(scalar @claimed, 3, 'the claim leases the three connections expiring soon');
my %vars = (new_credentials => q{'\x02'::bytea}, new_expires_at => q{now() + interval '1 hour'});
my (@renewed, @outcomes, @released);
for my $i (0 .. 2)
{
	@vars{qw(connection_id lease_token)} = ("'$claimed[$i][0]'::uuid", "'$claimed[$i][1]'::uuid");
	my $bind = sub { (my $sql = shift) =~ s/:(\w+)/$vars{$1}/g; return $sql };
	push @renewed, $node->safe_psql('app', "SET ROLE provider_worker; " . $bind->($renew) . " IS NOT NULL");
	push @outcomes, $node->safe_psql('app',
		"SET ROLE provider_worker; SELECT ok FROM (" . $bind->(($refresh, $revoke, $failure)[$i]) . ") r");
	push @released, $node->safe_psql('app', "SET ROLE provider_worker; " . $bind->($release));
}
is(join(',', @renewed), 't,t,t', 'the renewals, as provider_worker');
is(join(',', @outcomes), 't,t,t', 'refresh, mark_revoked and record_refresh_failure all succeed as provider_worker');
is(join(',', @released), 'f,f,f', 'nothing is left to release: each outcome ended its lease');
is($node->safe_psql('app', q{SELECT string_agg(status || '/' || (lease_until IS NULL) || '/' || refresh_failures, ',' ORDER BY status, refresh_failures)
                              FROM provider_connections WHERE alias = 'soon'}),
	'active/true/0,active/true/1,revoked/true/0', 'each ended its lease; the failure is counted');

# Key rotation, its shell steps and its SQL as written, in a cluster where
# a second database holds credentials too (and a third has no extension):
# the check must refuse until both are re-sealed. A reload reaches sessions
# between statements, so each step after a reload runs in a new session
# once the setting shows.
my $rotation = section('## Key rotation');
my @sh = $rotation =~ /^```sh\n(.*?)^```/msg;
is(scalar @sh, 3, 'Key rotation: the key file step, rotate-all.sh and check-keys.sh');
my ($point_sql, $drop_sql) = blocks('## Key rotation', 2);
ok($point_sql && $drop_sql, 'Key rotation: the SQL that points the settings and the SQL that drops the previous key');
fresh_db($node, 'app2');
$node->safe_psql('app2', q{SELECT provider_connect(gen_random_uuid(), 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
                           'schwab', '\x01') FROM generate_series(1, 30)});
$node->safe_psql('postgres', 'CREATE DATABASE no_extension');
my $old_id = $node->safe_psql('app', q{SELECT encode(substr(encrypted_credentials, 4, 4), 'hex')
                                        FROM provider_connections WHERE alias = 'soon' AND status = 'active'});

# run_sh(SCRIPT): bash runs it with the node's connection in the environment.
sub run_sh
{
	my ($script) = @_;
	local $ENV{PGDATA} = $node->data_dir;
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'bash', '-c', $script ], '<', \undef, '>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}
my ($rc, $out, $err) = run_sh($sh[0]);
is($rc, 0, 'the new key file is written') or diag($err);
$node->safe_psql('app', $point_sql);
ok($node->poll_query_until('app', q{SELECT current_setting('provider_connections.encryption_key_file') = 'provider_connections.new.key'}),
	'the reload took the new key file');
($rc, $out, $err) = run_sh($sh[2]);
isnt($rc, 0, 'before re-sealing, check-keys.sh says no');
like($out, qr/^app: [1-9]\d* credentials sealed under another key/m, 'and counts the credentials of app');
like($out, qr/^app2: 30 credentials sealed under another key/m, 'and those of app2');
unlike($out, qr/no_extension|safe to remove/, 'not the database without the extension, and not "safe"');
($rc, $out, $err) = run_sh($sh[1]);
is($rc, 0, 'rotate-all.sh ran') or diag($err);
like($out, qr/^app: every credential sealed under the current key\napp2: every credential sealed under the current key$/m,
	'rotate-all.sh re-sealed app and app2');
($rc, $out, $err) = run_sh($sh[2]);
is($rc, 0, 'after re-sealing, check-keys.sh says yes') or diag("$out\n$err");
like($out, qr/^app: 0 credentials.*^app2: 0 credentials.*^safe to remove the previous key$/ms,
	'every database at 0, "safe to remove the previous key"');
$node->safe_psql('app', $drop_sql);
ok($node->poll_query_until('app', q{SELECT current_setting('provider_connections.encryption_key_previous_file') = ''}),
	'the previous key file is reset');
my $new_id = $node->safe_psql('app', q{SELECT encode(substr(encrypted_credentials, 4, 4), 'hex')
                                        FROM provider_connections WHERE alias = 'soon' AND status = 'active'});
isnt($new_id, $old_id, "credentials now carry the new key's id ($old_id -> $new_id)");
for my $db ('app', 'app2')
{
	is($node->safe_psql($db, q{SELECT count(*) FILTER (WHERE provider_credentials(id) IS NULL) || '/' || count(*)
	                            FROM provider_connections WHERE encrypted_credentials IS NOT NULL}),
		'0/' . $node->safe_psql($db, 'SELECT count(*) FROM provider_connections WHERE encrypted_credentials IS NOT NULL'),
		"$db: every credential opens with the new key alone");
}

# The inventory: every ```sql block of the README runs in a test, here
# (counted by blocks() above) or in the test that owns its section.
# (docs/replication.md's SQL is run whole by t/010_replication.pl.)
my %elsewhere = ('## Operations' => 't/011_cron.pl: pg_cron runs the jobs; t/017_exporter.pl: Monitoring');
my ($heading, %count);
my $fenced = 0;
for my $line (split /\n/, $readme)
{
	if ($line =~ /^ *```(\w*)/)
	{
		$count{$heading}++ if !$fenced && $1 eq 'sql' && defined $heading;
		$fenced = !$fenced;
		next;
	}
	$heading = $line if !$fenced && $line =~ /^## /;
}
my @untested = grep { !exists $elsewhere{$_} && ($ran_here{$_} // 0) != $count{$_} } sort keys %count;
is_deeply(\@untested, [], 'every SQL block of the README runs in a test')
  or diag(join("\n", map { "$_: $count{$_} block(s), " . ($ran_here{$_} // 0) . ' run by t/012' } @untested));

$node->stop;
done_testing();
