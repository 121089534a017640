# t/010_replication.pl: logical replication of the extension's tables from
# a publisher cluster to a subscriber cluster on the same machine, set up
# with the SQL of docs/replication.md, the README's guide to logical
# replication (read from the file itself; every SQL block of it runs here, on the side
# its first line names):
#
#	- the initial copy and streamed changes arrive whole: connections (whose
#	  credentials open with the same key), audit rows and the feed with the
#	  publisher's positions; the subscriber numbers nothing itself;
#	- calls on the subscriber raise SQLSTATE 25006 naming the subscription
#	  and the publisher, never the password, and write nothing;
#	- a row changed on the subscriber does not stop the apply worker: the
#	  publisher's next change to it applies and the row converges, the feed
#	  has no gap; a session of its own on the subscriber is still held to
#	  the state machine, replica role or not;
#	- a purge on the publisher does not reach the subscriber;
#	- the feed refuses to be read while it cannot be whole: positions not
#	  published (then fixed as the README says), initial copy not done;
#	- in worker mode the subscriber's worker notifies replicated events;
#	- key rotation in the README's order keeps every credential open on the
#	  subscriber;
#	- wal2json reads the audit rows, with credentials only sealed, and a
#	  pgoutput reader of the CDC publication never sees the sealed column;
#	- a subscriber takes over: calls work there and its feed continues.
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
use Time::HiRes qw(usleep);

# ---- the guide's SQL ----

# The guide's text, docs/replication.md, whole.
sub section_text
{
	return slurp_file("$FindBin::RealBin/../docs/replication.md");
}

# Every ```sql block of the section, by its first line (which says where it runs).
my %block;
my @block_order;
{
	my $text = section_text();
	while ($text =~ /^([ \t]*)```sql\n(.*?)^[ \t]*```$/msg)
	{
		my ($indent, $sql) = ($1, $2);
		$sql =~ s/^\Q$indent\E//mg;
		my ($first) = split /\n/, $sql;
		die "two SQL blocks start with \"$first\"" if exists $block{$first};
		$block{$first} = $sql;
		push @block_order, $first;
	}
}
my %ran;

# block(FIRST_LINE): the SQL of the block that starts so, marked as run.
sub block
{
	my ($first) = @_;
	die "the section has no SQL block starting with \"$first\"" unless exists $block{$first};
	$ran{$first} = 1;
	return $block{$first};
}

# The README's publisher, and this test's.
my $doc_publisher = 'host=publisher.example.com port=5432 dbname=app';

my $key = random_key();
# Cluster.pm turns WAL senders off unless asked for streaming.
my $pub = pc_node('publisher', key => $key,
	conf => "wal_level = logical\nmax_wal_senders = 10\nmax_replication_slots = 10\n");
my $sub = pc_node(
	'subscriber',
	key => $key,
	conf => "max_worker_processes = 24\nprovider_connections.notify = worker\n");
my $pub_at = 'host=' . $pub->host . ' port=' . $pub->port;

# The README's SQL for this test's publisher, its database DB.
sub here
{
	my ($sql, $db) = @_;
	$sql =~ s/\Q$doc_publisher\E/$pub_at dbname=$db/g;
	return $sql;
}

# ---- fingerprints ----

# The feed after a position, as a consumer reads it, and the connections
# with their plain credentials.
sub feed_fp
{
	my ($after) = @_;
	$after //= 0;
	return qq{SELECT count(*) || ' events, ' || md5(string_agg(concat_ws(',', global_position,
	              audit_id, event_id, event_type, user_id, connection_id, reason, occurred_at,
	              context), '|' ORDER BY global_position))
	            FROM provider_events_since($after, 1000000)};
}
my $connections_fp = q{SELECT count(*) || ' connections, ' || md5(string_agg(concat_ws(',', id,
	user_id, provider_id, status, alias, credential_type, credentials_expires_at,
	encode(provider_credentials(id), 'hex'), connected_at, last_sync_at, created_at, updated_at),
	'|' ORDER BY id)) FROM provider_connections};

# sync(DB[, APPNAME]): every event committed on the publisher numbered,
# then applied by the subscriber.
sub sync
{
	my ($db, $appname) = @_;
	$pub->safe_psql($db, 'SELECT provider_feed_head()');
	$pub->wait_for_catchup($appname // 'provider_connections_sub');
	return;
}

# same(DB_PUB, DB_SUB, SQL, NAME): SQL gives the same on both sides.
sub same
{
	my ($pdb, $sdb, $sql, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $expected = $pub->safe_psql($pdb, $sql);
	return sql_is($sub, $sdb, $sql, $expected, "$name ($expected)");
}

# refused(DB, SQL, FUNCTION, NAME): SQL raises 25006, the call refused.
sub refused
{
	my ($db, $sql, $func, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) =
	  $sub->psql($db, $sql, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	my $ok = like($err,
		qr/ERROR:  25006: $func cannot run on a logical replication subscriber/, $name);
	diag("stderr: $err") unless $ok;
	return $ok;
}

# conn(ALIAS): the id of the connection with that alias, on the publisher.
sub conn
{
	my ($alias) = @_;
	return $pub->safe_psql('app', "SELECT id FROM provider_connections WHERE alias = '$alias'");
}

# ---- the publisher, with connections before anyone subscribes ----

fresh_db($pub, 'app');
my $seed = q{
	SELECT provider_connect(('c0000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid,
	                        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
	                        convert_to('token-' || n, 'UTF8'), 'oauth2',
	                        now() + interval '1 hour', 'account ' || n)
	  FROM generate_series(%d, %d) n;
	SELECT provider_refresh_tokens(id, convert_to('refreshed-' || id, 'UTF8'))
	  FROM provider_connections WHERE alias LIKE '%%0' AND status = 'active';
	SELECT provider_disconnect(user_id, id) FROM provider_connections
	 WHERE alias LIKE '%%5' AND status = 'active';
	SELECT provider_connect(NULL, NULL, NULL, NULL);};
$pub->safe_psql('app', sprintf($seed, 1, 40));
$pub->safe_psql('app', 'SELECT provider_feed_head()');

$pub->safe_psql('app',
	block('-- On the publisher, in the database where the extension is installed:'));

# ---- a subscriber ----

$sub->safe_psql('postgres', 'CREATE DATABASE app');
$sub->safe_psql('app', here(block('-- On each subscriber, in a database of its own:'), 'app'));
ok( $sub->poll_query_until('app', block('-- On the subscriber: true once the initial copy is over')),
	'the initial copy of the three tables finishes');
sync('app');

# (a) the feed, with the publisher's positions, and the connections.
same('app', 'app', feed_fp(), 'initial copy: the feed is the publisher\'s');
same('app', 'app', $connections_fp,
	'initial copy: the connections, credentials opened with the same key');
sql_ok($sub, 'app', 'the subscriber numbered nothing itself',
	'SELECT NOT is_called FROM provider_event_position_seq');

# Streamed changes.
$pub->safe_psql('app', sprintf($seed, 41, 80));
sync('app');
same('app', 'app', feed_fp(), 'streamed changes: the feed is the publisher\'s');
same('app', 'app', $connections_fp, 'streamed changes: the connections');
sql_ok($sub, 'app', 'the subscriber still numbered nothing',
	'SELECT NOT is_called FROM provider_event_position_seq');

# (b) calls on the subscriber: the README's example, its message as shown.
{
	my $example = block('-- On a subscriber:');
	my @expected = map { s/^-- //r } grep { /^-- (ERROR|DETAIL|HINT):/ } split /\n/, $example;
	my ($ret, $out, $err) = $sub->psql('app', $example);
	my @got = map { s/^psql:[^:]*:\d+: //r } grep { /(ERROR|DETAIL|HINT):/ } split /\n/, $err;
	my $want = here(join("\n", @expected), 'app');
	is(join("\n", @got), $want, 'a call on the subscriber fails with the README\'s message');
	unlike($err, qr/change-me|provider_replicator|user=/,
		'the message names no user and no password of the connection string');
}
refused('app', q{SELECT provider_disconnect(user_id, id) FROM provider_connections LIMIT 1},
	'provider_disconnect', 'provider_disconnect is refused with SQLSTATE 25006');
refused('app',
	q{SELECT provider_refresh_tokens(id, '\x01') FROM provider_connections LIMIT 1},
	'provider_refresh_tokens', 'provider_refresh_tokens is refused');
refused('app', q{SELECT * FROM provider_rotate_credentials(10)},
	'provider_rotate_credentials', 'provider_rotate_credentials is refused');
refused('app', q{SELECT provider_begin_connect(gen_random_uuid(), gen_random_uuid(), 'schwab')},
	'provider_begin_connect', 'provider_begin_connect is refused');
refused('app', q{SELECT provider_mark_expired(id) FROM provider_connections LIMIT 1},
	'provider_mark_expired', 'provider_mark_expired is refused');
refused('app', q{SELECT provider_expire_overdue('0')},
	'provider_expire_overdue', 'provider_expire_overdue is refused');
refused('app', q{SELECT * FROM provider_claim_expiring('1 day')},
	'UPDATE of provider_connections', 'provider_claim_expiring is refused (by the guard)');
refused('app', q{UPDATE provider_connections SET alias = 'local' WHERE alias = 'account 7'},
	'UPDATE of provider_connections', 'a direct UPDATE is refused');
sql_ok($sub, 'app', 'refused calls took no audit id and wrote nothing',
	'SELECT NOT is_called FROM provider_audit_log_id_seq');
same('app', 'app', 'SELECT count(*) FROM provider_audit_log',
	'the subscriber holds exactly the publisher\'s audit rows');
sql_ok($sub, 'app', 'provider_credentials reads on the subscriber',
	"SELECT provider_credentials('" . conn('account 1') . "') = 'token-1'::bytea");

# In worker mode the subscriber's worker notifies replicated events; its
# first round starts from the head, so keep calling until one is heard.
{
	my $listener = $sub->background_psql('app');
	$listener->set_query_timer_restart();
	$listener->query_safe('LISTEN provider_events');
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	my ($heard, $n) = ('', 1000);
	my %ids;
	while (!$heard && time < $deadline)
	{
		$n++;
		my $user = sprintf('bbbbbbbb-0000-0000-0000-%012d', $n);
		$pub->safe_psql('app',
			"SELECT provider_connect('$user', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',"
			  . " 'schwab', '\\x01')");
		$ids{$_} = 1 for split /\n/,
		  $pub->safe_psql('app', "SELECT event_id FROM provider_audit_log WHERE user_id = '$user'");
		sync('app');
		my $until = time + 5;
		while (!$heard && time < $until)
		{
			my $got = $listener->query_safe('SELECT 1');
			while ($got =~ /Asynchronous notification "provider_events" with payload "(.*?)" received/g)
			{
				my $payload = $1;
				my ($event) = $payload =~ /"event_id":"([0-9a-f-]+)"/;
				$heard = $payload if defined $event && $ids{$event};
			}
			usleep(100_000) unless $heard;
		}
	}
	$listener->quit;
	like($heard, qr/"global_position":\d+/,
		'the subscriber\'s worker notifies a replicated event, with its position')
	  or diag($sub->safe_psql('postgres',
		"SELECT pid, backend_type, datname, state, wait_event FROM pg_stat_activity"));
	my ($event) = $heard =~ /"event_id":"([0-9a-f-]+)"/;
	my ($position) = $heard =~ /"global_position":(\d+)/;
	sql_is($pub, 'app',
		"SELECT global_position FROM provider_event_positions p JOIN provider_audit_log a"
		  . " ON a.id = p.audit_id WHERE a.event_id = '" . ($event // '') . "'",
		$position // '', 'the notified position is the publisher\'s');
}

# ---- (c) a row that diverged on the subscriber ----

my $x = conn('account 1');
my $y = conn('account 2');
# An operator's repair on the subscriber, under the replica role.
$sub->safe_psql('app', qq{
	SET session_replication_role = replica;
	UPDATE provider_connections SET status = 'disconnected', encrypted_credentials = NULL,
	       credential_type = NULL, credentials_expires_at = NULL WHERE id = '$x';
	UPDATE provider_connections SET status = 'revoked' WHERE id = '$y';});
my ($ret, $out, $err) = $sub->psql('app', qq{
	SET session_replication_role = replica;
	UPDATE provider_connections SET status = 'active' WHERE id = '$x';});
like($err, qr/illegal provider connection status transition from "disconnected" to "active"/,
	'under the replica role a session on the subscriber is still held to the state machine');
sql_ok($sub, 'app', 'the repair recorded no event on the subscriber',
	'SELECT NOT is_called FROM provider_audit_log_id_seq');
my $log_offset = log_size($sub);

# On the publisher, moves that are illegal from the subscriber's versions.
$pub->safe_psql('app', qq{
	SELECT provider_refresh_tokens('$x', convert_to('after-divergence', 'UTF8'));
	UPDATE provider_connections SET status = 'expired' WHERE id = '$y';});
$pub->safe_psql('app', sprintf($seed, 81, 90));
sync('app');
same('app', 'app', $connections_fp,
	'the diverged rows converge to the publisher\'s (disconnected -> active, revoked -> expired)');
sql_ok($sub, 'app', 'the refreshed credentials open on the subscriber',
	"SELECT provider_credentials('$x') = 'after-divergence'::bytea");
same('app', 'app', feed_fp(), 'the feed has every event, no gap');
unlike(log_since($sub, $log_offset), qr/logical replication.*(worker|apply).*exited|could not|ERROR:  illegal/i,
	'the apply worker never stopped');
sql_is($sub, 'app',
	block('-- On a subscriber: errors of its apply and copy workers'),
	'provider_connections_sub|0|0', 'the apply and copy workers counted no error');

# ---- purges: the publisher's stays there, the subscriber has its own ----

my $purge_upto = $pub->safe_psql('app',
	'SELECT global_position FROM provider_event_positions ORDER BY global_position OFFSET 9 LIMIT 1');
my $sub_audit = $sub->safe_psql('app', 'SELECT count(*) FROM provider_audit_log');
is($pub->safe_psql('app',
		"SELECT provider_purge_events(now() + interval '1 day', $purge_upto)"),
	'10', 'the publisher purges its 10 oldest events');
$pub->safe_psql('app', sprintf($seed, 91, 95));
sync('app');
sql_ok($sub, 'app', 'the subscriber still has them',
	"SELECT count(*) = 10 FROM provider_event_positions WHERE global_position <= $purge_upto");
same('app', 'app', feed_fp($purge_upto),
	'replication went on after the purge: the feed after it is the publisher\'s');
sql_ok($sub, 'app', 'the publisher\'s purge event arrived like any other',
	"SELECT count(*) = 1 FROM provider_audit_log WHERE event_type = 'ProviderEventsPurged'");

# The subscriber's own purge, from the README, with its consumers' positions.
$sub->safe_psql('app', qq{
	CREATE SCHEMA consumer;
	CREATE TABLE consumer.consumer_position (position bigint);
	INSERT INTO consumer.consumer_position VALUES ($purge_upto + 5), ($purge_upto + 20);});
my $passed = $sub->safe_psql('app',
	'SELECT count(*) FROM provider_event_positions WHERE global_position <= ' . ($purge_upto + 5));
# Everything here is minutes old: "90 days" becomes "in a day".
is($sub->safe_psql('app',
		block('-- On a subscriber, from its own pg_cron (not provider_expire_overdue: the publisher runs that):')
		  =~ s/now\(\) - interval '90 days'/now() + interval '1 day'/r),
	$passed, "the subscriber purges what its consumers passed ($passed events)");
sql_ok($sub, 'app', 'its purge took no audit id: it records no event there',
	'SELECT NOT is_called FROM provider_audit_log_id_seq');
$pub->safe_psql('app', sprintf($seed, 96, 98));
sync('app');
same('app', 'app', feed_fp($purge_upto + 5),
	'replication went on after the subscriber\'s purge');

# ---- the feed refuses to be read while it cannot be whole ----

# Positions left out of the publication, then added as the README says.
fresh_db($pub, 'app2');
$pub->safe_psql('app2', q{
	GRANT SELECT ON provider_connections, provider_audit_log, provider_event_positions
	    TO provider_replicator;
	CREATE PUBLICATION provider_connections_pub FOR TABLE provider_connections;
	CREATE PUBLICATION provider_events_pub FOR TABLE provider_audit_log
	    WITH (publish = 'insert');});
$pub->safe_psql('app2', sprintf($seed, 1, 10));
$sub->safe_psql('postgres', 'CREATE DATABASE incomplete');
$log_offset = log_size($sub);
$sub->safe_psql('incomplete', qq{
	CREATE EXTENSION provider_connections CASCADE;
	CREATE SUBSCRIPTION provider_connections_sub
	    CONNECTION '$pub_at dbname=app2 user=provider_replicator application_name=incomplete'
	    PUBLICATION provider_connections_pub, provider_events_pub
	    WITH (slot_name = 'incomplete_sub');});
ok( $sub->poll_query_until('incomplete',
		"SELECT count(*) = 2 AND bool_and(srsubstate = 'r') FROM pg_subscription_rel"),
	'positions not published: the other two tables are copied');
($ret, $out, $err) = $sub->psql('incomplete', 'SELECT * FROM provider_events_since(0)');
like($err,
	qr/the event feed cannot be read on this subscriber: provider_audit_log is replicated without provider_event_positions/,
	'positions not published: reading the feed fails, naming the missing table');
ok( wait_for_log_match(
		$sub,
		qr/WARNING:  the event feed cannot be read on this subscriber: provider_audit_log is replicated without provider_event_positions/,
		$log_offset),
	'positions not published: the subscriber\'s worker says so in the log');
refused('incomplete',
	q{SELECT provider_connect(gen_random_uuid(), gen_random_uuid(), 'schwab', '\x01')},
	'provider_connect', 'positions not published: calls are still refused');
$pub->safe_psql('app2',
	block('-- On the publisher, when provider_event_positions was left out:'));
$sub->safe_psql('incomplete', block('-- Then on the subscriber:'));
ok( $sub->poll_query_until('incomplete',
		"SELECT count(*) = 3 AND bool_and(srsubstate = 'r') FROM pg_subscription_rel"),
	'positions added: their table is copied');
sync('app2', 'incomplete');
{
	my $expected = $pub->safe_psql('app2', feed_fp());
	sql_is($sub, 'incomplete', feed_fp(), $expected,
		"positions added: the feed is the publisher's ($expected)");
}
$sub->safe_psql('incomplete', 'DROP SUBSCRIPTION provider_connections_sub');

# A subscription whose initial copy has not begun.
$sub->safe_psql('postgres', 'CREATE DATABASE syncing');
$sub->safe_psql('syncing', qq{
	CREATE EXTENSION provider_connections CASCADE;
	CREATE SUBSCRIPTION provider_connections_sub
	    CONNECTION '$pub_at dbname=app user=provider_replicator'
	    PUBLICATION provider_connections_pub, provider_events_pub
	    WITH (enabled = false, slot_name = 'syncing_sub');});
($ret, $out, $err) = $sub->psql('syncing', 'SELECT * FROM provider_events_since(0)');
like($err,
	qr/the event feed cannot be read on this subscriber until its initial synchronization has finished/,
	'initial copy not done: reading the feed fails');
refused('syncing', q{SELECT provider_connect(gen_random_uuid(), gen_random_uuid(), 'schwab', '\x01')},
	'provider_connect', 'initial copy not done, subscription disabled: calls are refused');
$sub->safe_psql('syncing', 'DROP SUBSCRIPTION provider_connections_sub');

# ---- (d) key rotation with a subscriber ----

my $key_ids = block(
	'-- On the publisher and on each subscriber: the keys that sealed the stored credentials');
my $old_key_ids = $pub->safe_psql('app', $key_ids);
like($old_key_ids, qr/^[0-9a-f]{8}\|\d+$/, 'before the rotation: one key sealed everything');
same('app', 'app', $key_ids, 'before the rotation: the subscriber holds the same');

my $new_key = random_key();
write_key_file($_->data_dir . '/provider_connections.new.key', $new_key) for ($pub, $sub);
my $switch = block('-- On each subscriber first, then on the publisher:');
for my $node ($sub, $pub)
{
	$node->safe_psql('app', $switch);
	ok( wait_for_setting($node, 'provider_connections.encryption_key_previous_file',
			'provider_connections.key'),
		$node->name . ': the new key is current, the old one previous');
}
my $rotate = block('-- On the publisher, each in its own transaction, until remaining = 0:');
my ($batches, $remaining) = (0, '');
while ($batches++ < 100)
{
	$remaining = $pub->safe_psql('app', $rotate);
	last if $remaining =~ /\|0$/;
}
like($remaining, qr/^\d+\|0$/, "the publisher rotated everything ($batches batches)");
$pub->safe_psql('app', sprintf($seed, 101, 105));
sync('app');
my $new_key_ids = $pub->safe_psql('app', $key_ids);
like($new_key_ids, qr/^[0-9a-f]{8}\|\d+$/, 'after the rotation: one key sealed everything');
isnt(substr($new_key_ids, 0, 8), substr($old_key_ids, 0, 8), 'and it is the new key');
same('app', 'app', $key_ids, 'the subscriber shows the same single key id');
same('app', 'app', $connections_fp, 'every credential opens on the subscriber during the rotation');
my $reset = block('-- On the publisher and on each subscriber, once they show the same single key_id:');
for my $node ($pub, $sub)
{
	$node->safe_psql('app', $reset);
	ok(wait_for_setting($node, 'provider_connections.encryption_key_previous_file', ''),
		$node->name . ': the old key is dropped');
}
$pub->safe_psql('app', "SELECT provider_refresh_tokens('" . conn('account 3')
	  . "', convert_to('after-rotation', 'UTF8'))");
sync('app');
same('app', 'app', $connections_fp,
	'every credential opens on the subscriber with the new key alone');

# ---- the slots, and CDC readers ----

like($pub->safe_psql('app', block('-- On the publisher: what each slot holds back')),
	qr/^provider_connections_sub\|t\|reserved\|\d+ (bytes|kB|MB)$/m,
	'the subscription\'s slot is active and its retained WAL is shown');

# Minor releases from 15.19 on allow only the output plugins listed.
my $allow = block('-- On the publisher, if the server has output_plugin_libraries (15.19 on):');
$pub->safe_psql('app', $allow)
  if $pub->safe_psql('postgres',
	"SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'") eq '1';
ok(wait_for_setting($pub, 'output_plugin_libraries', 'pgoutput, test_decoding, wal2json'),
	'wal2json is an allowed output plugin')
  if $pub->safe_psql('postgres',
	"SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'") eq '1';
$pub->safe_psql('app', block('-- On the publisher (wal_level = logical):'));
my $plain = 'cdc-plain-token-7f3a';
$pub->safe_psql('app', qq{
	SELECT provider_connect('dddddddd-0000-0000-0000-000000000001',
	                        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
	                        convert_to('$plain', 'UTF8'), alias => 'cdc')});
$pub->safe_psql('app', 'SELECT provider_feed_head()');
my @cdc_events = split /\n/, $pub->safe_psql('app',
	"SELECT event_id FROM provider_audit_log WHERE user_id = 'dddddddd-0000-0000-0000-000000000001'");
my $cdc_audit = $pub->safe_psql('app',
	"SELECT max(id) FROM provider_audit_log WHERE user_id = 'dddddddd-0000-0000-0000-000000000001'");
my $changes = $pub->safe_psql('app',
	block('-- A CDC reader, over and over (each call consumes what it returns):'));
my @audit_inserts = grep { /"action":"I","schema":"public","table":"provider_audit_log"/ } split /\n/, $changes;
is(scalar(grep { my $line = $_; grep { index($line, qq{"value":"$_"}) >= 0 } @cdc_events } @audit_inserts),
	2, 'wal2json: both audit rows of the call, with their event ids');
like($changes, qr/"table":"provider_event_positions".*"name":"audit_id","type":"bigint","value":$cdc_audit\b/,
	'wal2json: the position of its outcome event');
like($changes, qr/"name":"encrypted_credentials","type":"bytea","value":"504301[0-9a-f]+"/,
	'wal2json: the credentials show as sealed bytes');
my $plain_hex = unpack('H*', $plain);
unlike($changes, qr/\Q$plain\E|$plain_hex/, 'wal2json: never the plain credentials');
$pub->safe_psql('app',
	block('-- When the reader is retired (a forgotten slot keeps WAL for ever):'));
sql_ok($pub, 'app', 'the CDC slot is gone',
	"SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name = 'provider_cdc'");

$pub->safe_psql('app', block(
	'-- On the publisher: what a pgoutput reader (Debezium) sees, without the sealed credentials'));
sql_ok($pub, 'app', 'the CDC publication leaves encrypted_credentials out',
	q{SELECT NOT ('encrypted_credentials' = ANY (attnames)) AND 'status' = ANY (attnames)
	    FROM pg_publication_tables
	   WHERE pubname = 'provider_cdc_pub' AND tablename = 'provider_connections'});
$pub->safe_psql('app',
	"SELECT pg_create_logical_replication_slot('provider_debezium_test', 'pgoutput')");
$pub->safe_psql('app', q{
	SELECT provider_connect('dddddddd-0000-0000-0000-000000000002',
	                        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01');
	SELECT provider_feed_head();});
# What the stream holds of a publication: its relation names, the event,
# and the sealed credentials (a column name, or the bytes in text form).
my $stream = q{
	SELECT count(*) FILTER (WHERE position('provider_slug'::bytea IN data) > 0) > 0,
	       count(*) FILTER (WHERE position('ProviderConnectionSucceeded'::bytea IN data) > 0) > 0,
	       count(*) FILTER (WHERE position('encrypted_credentials'::bytea IN data) > 0
	                           OR position(convert_to('\x504301', 'UTF8') IN data) > 0)
	  FROM pg_logical_slot_%s_binary_changes('provider_debezium_test', NULL, NULL,
	       'proto_version', '1', 'publication_names', '%s')};
sql_is($pub, 'app', sprintf($stream, 'peek', 'provider_cdc_pub'), 't|t|0',
	'pgoutput through the CDC publication: connections and events, no sealed column');
sql_is($pub, 'app', sprintf($stream, 'get', 'provider_connections_pub,provider_events_pub'),
	't|t|2', 'the same through the replicas\' publications: the sealed column (name and value)');
$pub->safe_psql('app', "SELECT pg_drop_replication_slot('provider_debezium_test')");

# ---- the subscriber takes over ----

sync('app');
same('app', 'app', feed_fp($purge_upto + 5),
	'before the takeover: the subscriber has the whole feed (but what each purged)');
my $head = $sub->safe_psql('app', 'SELECT max(global_position) FROM provider_event_positions');
my $max_audit = $sub->safe_psql('app', 'SELECT max(id) FROM provider_audit_log');
$sub->safe_psql('app', block('-- On the subscriber that takes over:'));
ok( $sub->poll_query_until('app',
		block('-- Then, until it returns true (the apply worker has stopped):')),
	'takeover: the apply worker stops');
$sub->safe_psql('app', block('-- Then:'));
$pub->safe_psql('app', block('-- On the old publisher:'));
sql_ok($pub, 'app', 'takeover: the old publisher keeps no slot for it',
	'SELECT count(*) = 0 FROM pg_replication_slots');
sql_ok($sub, 'app', 'takeover: calls work on the new publisher',
	q{SELECT (provider_connect('eeeeeeee-0000-0000-0000-000000000001',
	                           'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\x01')).ok});
sql_is($sub, 'app',
	"SELECT string_agg(global_position::text || ':' || (audit_id > $max_audit)::text, ','"
	  . " ORDER BY global_position) FROM provider_events_since($head)",
	($head + 1) . ':true,' . ($head + 2) . ':true',
	'takeover: its events take new audit ids and continue the feed after the replicated positions');
sql_ok($sub, 'app', 'takeover: every audit row has a position',
	'SELECT count(*) = 0 FROM provider_audit_log a WHERE NOT EXISTS'
	  . ' (SELECT 1 FROM provider_event_positions p WHERE p.audit_id = a.id)');

# Every SQL block of the section ran.
is_deeply([ grep { !$ran{$_} } @block_order ], [], 'every SQL example of the section ran');

$sub->stop;
$pub->stop;
done_testing();
