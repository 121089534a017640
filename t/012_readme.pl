# t/012_readme.pl: the README's SQL, run as written. Each ```sql block of
# README.md is taken from the file itself (so an edit there is tested
# here), and run where it belongs: Install and Getting started on a fresh
# database (the example ids, written "01a204b9-...", stand for the id the
# connect returned); the Security model's grants, with its roles created;
# the refresh worker's loop as provider_worker, its psql variables set to a
# claimed connection; Key rotation, its shell step and its SQL. Operations
# (pg_cron) is run by t/011_cron.pl, Logical replication by
# t/010_replication.pl.
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

my $node = pc_node('readme');
$node->safe_psql('postgres', 'CREATE DATABASE app');

# Install, then Getting started.
my ($install) = sql_blocks(section('## Install'));
ok($install, 'Install has its SQL');
$node->safe_psql('app', $install);
is($node->safe_psql('app', q{SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension
                              WHERE extname <> 'plpgsql'}),
	'pgcrypto,provider_connections', 'Install: the extension and pgcrypto');

my ($start) = sql_blocks(section('## Getting started'));
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

# The Security model's grants, with its roles made first.
my ($grants) = sql_blocks(section('## Security model'));
ok($grants, 'Security model has its grants');
my @roles = do { my %seen; grep { !$seen{$_}++ } $grants =~ /\bTO (\w+);/g };
is(join(',', sort @roles), 'app,mailer,provider_maintenance,provider_worker', 'the roles it grants to');
$node->safe_psql('app', join('', map { "CREATE ROLE $_;\n" } @roles) . $grants);

# The refresh worker's loop, as provider_worker, on a connection expiring soon.
$node->safe_psql('app', q{
SELECT provider_connect('12121212-1212-1212-1212-121212121212', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
                        'schwab', '\x01', 'oauth2', now() + interval '2 minutes', 'soon') FROM generate_series(1, 3)});
my ($loop) = sql_blocks(section('## Refresh workers'));
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

# Key rotation, the shell step and then the SQL, as written. A reload
# reaches sessions between statements, so each step after a reload runs in
# a new session once the setting shows.
my $rotation = section('## Key rotation');
my ($sh) = $rotation =~ /^```sh\n(.*?)^```/ms;
my ($rotate_sql) = sql_blocks($rotation);
ok($sh && $rotate_sql, 'Key rotation has its shell step and its SQL');
my $old_id = $node->safe_psql('app', q{SELECT encode(substr(encrypted_credentials, 4, 4), 'hex')
                                        FROM provider_connections WHERE alias = 'soon' AND status = 'active'});
{
	local $ENV{PGDATA} = $node->data_dir;
	system('bash', '-c', $sh) == 0 or die "the README's key command failed";
}
my @rot = grep { /\S/ } map { s/^--.*$//mgr } split /;\s*\n/, $rotate_sql;
is(scalar @rot, 6, 'the rotation SQL: six statements');
$node->safe_psql('app', "$_;") for @rot[0 .. 2];
ok($node->poll_query_until('app', q{SELECT current_setting('provider_connections.encryption_key_file') = 'provider_connections.new.key'}),
	'the reload took the new key file');
is($node->safe_psql('app', "SELECT remaining FROM ($rot[3]) r"), '0', 'one batch re-sealed everything');
$node->safe_psql('app', "$_;") for @rot[4 .. 5];
ok($node->poll_query_until('app', q{SELECT current_setting('provider_connections.encryption_key_previous_file') = ''}),
	'the previous key file is reset');
my $new_id = $node->safe_psql('app', q{SELECT encode(substr(encrypted_credentials, 4, 4), 'hex')
                                        FROM provider_connections WHERE alias = 'soon' AND status = 'active'});
isnt($new_id, $old_id, "credentials now carry the new key's id ($old_id -> $new_id)");
is($node->safe_psql('app', q{SELECT count(*) FILTER (WHERE provider_credentials(id) IS NULL) || '/' || count(*)
                              FROM provider_connections WHERE encrypted_credentials IS NOT NULL}),
	'0/' . $node->safe_psql('app', 'SELECT count(*) FROM provider_connections WHERE encrypted_credentials IS NOT NULL'),
	'and every one opens with the new key alone');

$node->stop;
done_testing();
