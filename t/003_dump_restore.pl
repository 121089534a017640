# t/003_dump_restore.pl: pg_dump of a database using the extension, restored
# into a fresh cluster with the same key, keeps every connection, every
# audit row and every feed position, the credentials open, the append-only
# rules do not get in the restore's way, and new events continue the feed
# after the old positions.
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

my $source = pc_node('source');
fresh_db($source, 'dumpsrc');

$source->safe_psql('dumpsrc', <<'SQL');
SELECT provider_connect(('d0000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid,
                        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
                        convert_to('token-' || n, 'UTF8'), 'oauth2', now() + interval '1 hour',
                        'account ' || n)
  FROM generate_series(1, 200) n;
SELECT provider_refresh_tokens(id, convert_to('refreshed-' || id, 'UTF8'))
  FROM provider_connections WHERE alias LIKE '%0';
SELECT provider_disconnect(user_id, id) FROM provider_connections WHERE alias LIKE '%5';
SELECT provider_connect(NULL, NULL, NULL, NULL);
SQL

my $fingerprint = q{SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
	SELECT concat_ws(',', id, user_id, status, alias, credential_type, credentials_expires_at,
	                 encode(provider_credentials(id), 'hex'), created_at, updated_at) AS x
	  FROM provider_connections
	UNION ALL SELECT concat_ws(',', id, event_id, event_type, user_id, connection_id, reason, occurred_at, context)
	  FROM provider_audit_log
	UNION ALL SELECT concat_ws(',', 'position', global_position, audit_id)
	  FROM provider_event_positions) s};
# Positions are assigned after commit: read the feed once, as a consumer
# would, so that every event is numbered before the dump.
$source->safe_psql('dumpsrc', 'SELECT count(*) FROM provider_events_since(0, 0)');
my $before = $source->safe_psql('dumpsrc', $fingerprint);
my $head = $source->safe_psql('dumpsrc',
	'SELECT max(global_position) FROM provider_event_positions');

my $dump = PostgreSQL::Test::Utils::tempdir . '/dumpsrc.dump';
$source->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', 'dumpsrc' ],
	'pg_dump of the source database');
note('dumped ' . (-s $dump) . ' bytes; restoring into a fresh cluster');

# A fresh cluster with the same key.
my $target = pc_node('target', key => key_of($source));
$target->safe_psql('postgres', 'CREATE DATABASE restored');
$target->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', 'restored', $dump ],
	'pg_restore into a fresh cluster with the same key');

sql_ok($target, 'restored',
	'connections, audit rows, positions and plain credentials are identical',
	"SELECT ($fingerprint) = '$before'");
sql_ok($target, 'restored', 'a new call works in the restored database',
	q{SELECT (provider_refresh_tokens(id, '\x01')).ok
	    FROM provider_connections WHERE status = 'active' ORDER BY id LIMIT 1});
# The new call's events are numbered when the feed is read.
sql_ok($target, 'restored',
	'its events continue the feed right after the restored positions',
	"SELECT min(global_position) = $head + 1 AND count(*) = 2 FROM provider_events_since($head)");
sql_ok($target, 'restored', 'the restored audit log is still append-only',
	"SELECT tgenabled = 'A' FROM pg_trigger WHERE tgname = 'provider_audit_log_append_only'");

$target->stop;
$source->stop;
done_testing();
