# t/013_notify.pl: every event is notified exactly once, whatever a session,
# role, database or function sets, and across a reload that changes
# provider_connections.notify; and an event's payload is the same whoever
# sends it (the caller in commit mode, the worker in worker mode, which adds
# global_position), key by key, in both payload modes.
#
# A listener counts the notifications by event_id. To know it has heard
# everything sent so far, a round of the worker is awaited
# (provider_events_since(0, 0) waits for one that began after it was asked)
# and then a marker is NOTIFYed on the same channel: the queue is one, in
# commit order, so once the marker arrives whatever was sent before it has.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;

use JSON::PP;
use PCTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pc_node('notify');
my $provider = 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa';
my $marker = 0;
my %listener;

# set_mode(NAME, VALUE): ALTER SYSTEM, reload, and wait until new sessions
# see it.
sub set_mode
{
	my ($name, $value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET provider_connections.$name = '$value'");
	$node->reload;
	ok(wait_for_setting($node, "provider_connections.$name", $value),
		"provider_connections.$name is $value");
	return;
}

# start_listener(DB): a session of DB listening on provider_events.
sub start_listener
{
	my ($db) = @_;
	my $l = $node->background_psql($db);
	$l->query_safe('LISTEN provider_events');
	$listener{$db} = $l;
	return;
}

# heard(DB): the payloads DB's listener received since the last call, once
# every notification sent before this call has arrived: a worker round
# first, then a marker.
sub heard
{
	my ($db) = @_;
	my $l = $listener{$db};
	my @got;
	$node->safe_psql($db, 'SELECT count(*) FROM provider_events_since(0, 0)');
	$marker++;
	$node->safe_psql($db, "NOTIFY provider_events, 'marker $marker'");
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	my $seen = 0;
	while (!$seen && time < $deadline)
	{
		my $out = $l->query_safe('SELECT 1');
		while ($out =~ /Asynchronous notification "provider_events" with payload "(.*?)" received/g)
		{
			my $p = $1;
			if ($p eq "marker $marker") { $seen = 1; }
			elsif ($p !~ /^marker /) { push @got, $p; }
		}
		usleep(20_000) unless $seen;
	}
	ok($seen, "$db: the listener heard the marker") or diag('payloads so far: ' . join("\n", @got));
	return @got;
}

# exactly_once(DB, USER, PAYLOADS, NAME): every event of USER in DB's audit
# log is among PAYLOADS exactly once, and PAYLOADS hold nothing else.
sub exactly_once
{
	my ($db, $user, $payloads, $name) = @_;
	my @events = split /\n/,
	  $node->safe_psql($db, "SELECT event_id FROM provider_audit_log WHERE user_id = '$user' ORDER BY id");
	my %count;
	for my $p (@$payloads)
	{
		my ($id) = $p =~ /"event_id":"([0-9a-f-]+)"/;
		$count{ $id // 'none' }++;
	}
	my @wrong = grep { ($count{$_} // 0) != 1 } @events;
	my %mine = map { $_ => 1 } @events;
	my @extra = grep { !$mine{$_} } keys %count;
	ok(@events > 0 && !@wrong && !@extra && @$payloads == @events,
		"$name: " . scalar(@events) . " events, " . scalar(@$payloads) . " notifications, each once")
	  or diag("not once: " . join(', ', map { "$_ x" . ($count{$_} // 0) } @wrong)
		  . "; not of this user: @extra");
	return;
}

# connects(USER, N): N provider_connect calls as SQL, one transaction each.
sub connects
{
	my ($user, $n) = @_;
	return join '', map { "SELECT ok FROM provider_connect('$user', '$provider', 'schwab', '\\x01');\n" } 1 .. $n;
}

# wait_for_worker(DB): polls until DB's background worker runs. A worker
# notifies from the feed's head as it was when it started.
sub wait_for_worker
{
	my ($db) = @_;
	ok($node->poll_query_until('postgres',
			"SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = '$db'"
			  . " AND backend_type = 'provider_connections worker'"),
		"$db: its worker runs");
	return;
}

my $n_user = 0;
sub new_user { return sprintf('11111111-0000-0000-0000-%012d', ++$n_user); }

fresh_db($node, 'app');
$node->safe_psql('postgres', 'CREATE ROLE admin LOGIN SUPERUSER');
start_listener('app');

# ---- 1. No session differs: every way to try is refused ----------------

for my $mode ('commit', 'worker')
{
	set_mode('notify', $mode);
	wait_for_worker('app') if $mode eq 'worker';
	my $other = $mode eq 'commit' ? 'worker' : 'commit';
	my @ways = (
		[ 'SET', "SET provider_connections.notify = '$other';\n" ],
		[ 'set_config', "SELECT set_config('provider_connections.notify', '$other', false);\n" ],
		[ 'SET LOCAL', "BEGIN;\nSET LOCAL provider_connections.notify = '$other';\nROLLBACK;\n" ],
		[ 'ALTER ROLE ... SET', "ALTER ROLE admin SET provider_connections.notify = '$other';\n" ],
		[ 'ALTER DATABASE ... SET', "ALTER DATABASE app SET provider_connections.notify = '$other';\n" ],
		[ 'ALTER ROLE ... IN DATABASE ... SET',
		  "ALTER ROLE admin IN DATABASE app SET provider_connections.notify = '$other';\n" ],
		[ "a function's SET clause",
		  "CREATE FUNCTION connect_as_other(u uuid) RETURNS boolean LANGUAGE sql"
			. " SET provider_connections.notify = '$other' AS \$\$"
			. " SELECT ok FROM provider_connect(u, '$provider', 'schwab', '\\x01') \$\$;\n" ]);
	for my $way (@ways)
	{
		my ($what, $attempt) = @$way;
		my $user = new_user();
		my ($ret, $out, $err) = $node->psql('app', $attempt, on_error_stop => 0, extra_params => [ '-U', 'admin' ]);
		like($err, qr/parameter "provider_connections.notify" cannot be changed now/,
			"server $mode, $what to $other: refused");
		# The same session (and role, and database) then calls.
		($ret, $out, $err) = $node->psql('app', $attempt . connects($user, 20)
			  . ($what =~ /function/ ? "SELECT connect_as_other('$user');\n" : ''),
			on_error_stop => 0, extra_params => [ '-U', 'admin' ]);
		is($node->safe_psql('app', "SELECT count(*) FROM provider_audit_log WHERE user_id = '$user'"),
			'40', "server $mode, $what: 20 connects wrote 40 events");
		exactly_once('app', $user, [ heard('app') ], "server $mode, $what");
		$node->safe_psql('app', 'DROP FUNCTION IF EXISTS connect_as_other(uuid)');
	}

	# A startup option is refused with the connection.
	my $user = new_user();
	my ($ret, $out, $err) = $node->psql('app', connects($user, 20),
		extra_params => [ '-U', 'admin' ],
		connstr => $node->connstr('app') . " options='-c provider_connections.notify=$other'");
	ok($ret != 0 && $err =~ /cannot be changed now/, "server $mode, a startup option: the connection is refused")
	  or diag("ret $ret, stderr $err");

	# A setting stored before it was refused (an older release took ALTER
	# DATABASE ... SET) is ignored, with a warning, when a session starts.
	$node->safe_psql('postgres',
		"INSERT INTO pg_db_role_setting VALUES ((SELECT oid FROM pg_database WHERE datname = 'app'), 0,"
		  . " '{provider_connections.notify=$other}')");
	($ret, $out, $err) = $node->psql('app', "SHOW provider_connections.notify;\n" . connects($user, 20));
	like($err, qr/WARNING: .*parameter "provider_connections.notify" cannot be changed now/,
		"server $mode, a stored ALTER DATABASE ... SET: a warning");
	like($out, qr/^$mode\n/, "server $mode, a stored ALTER DATABASE ... SET: ignored");
	exactly_once('app', $user, [ heard('app') ], "server $mode, a stored ALTER DATABASE ... SET");
	$node->safe_psql('postgres', 'DELETE FROM pg_db_role_setting WHERE setdatabase <> 0');

	# The payload mode cannot differ either.
	($ret, $out, $err) = $node->psql('app', "SET provider_connections.notify_payload = 'ids'", on_error_stop => 0);
	like($err, qr/parameter "provider_connections.notify_payload" cannot be changed now/,
		"server $mode, SET notify_payload: refused");
	($ret, $out, $err) = $node->psql('app', "ALTER DATABASE app SET provider_connections.notify_payload = 'ids'",
		on_error_stop => 0);
	like($err, qr/cannot be changed now/, "server $mode, ALTER DATABASE ... SET notify_payload: refused");
}

# ---- 1. A reload that changes the mode loses and doubles nothing --------

# The session calls in one mode inside an open transaction, the mode
# changes, another session calls in the new mode (its commit wakes the
# worker, which then runs with the new mode), the first calls again in the
# same transaction (now in the new mode) and commits.
for my $switch ([ 'commit', 'worker' ], [ 'worker', 'commit' ], [ 'worker', 'off' ], [ 'off', 'worker' ])
{
	my ($from, $to) = @$switch;
	set_mode('notify', $from);
	heard('app');
	my ($open, $other) = (new_user(), new_user());
	my $s = $node->background_psql('app');
	$s->query_safe("BEGIN");
	$s->query_safe(connects($open, 3));
	set_mode('notify', $to);
	$node->safe_psql('app', connects($other, 3));
	$s->query_safe(connects($open, 2));
	$s->query_safe('COMMIT');
	$s->quit;
	$node->safe_psql('app', connects($other, 2));
	my @got = heard('app');
	my %by;
	for my $p (@got)
	{
		my ($u) = $p =~ /"user_id":"([0-9a-f-]+)"/;
		push @{ $by{ $u // '' } }, $p;
	}
	# Each event is notified as the mode in force when it was written says.
	my %expect_notified = (commit => 1, worker => 1, off => 0);
	for my $case ([ $open, 'the transaction open across the reload' ], [ $other, 'the session after it' ])
	{
		my ($user, $what) = @$case;
		my $by_mode = $node->safe_psql('app',
			"SELECT string_agg(context->>'notify', ',' ORDER BY id) FROM provider_audit_log WHERE user_id = '$user'");
		my @modes = split /,/, $by_mode;
		my @ids = split /\n/, $node->safe_psql('app',
			"SELECT event_id FROM provider_audit_log WHERE user_id = '$user' ORDER BY id");
		my %count;
		for my $p (@{ $by{$user} // [] })
		{
			my ($id) = $p =~ /"event_id":"([0-9a-f-]+)"/;
			$count{$id}++;
		}
		my @wrong;
		for my $i (0 .. $#ids)
		{
			my $want = $expect_notified{ $modes[$i] } // -1;
			push @wrong, "$ids[$i] ($modes[$i]) x" . ($count{ $ids[$i] } // 0)
			  if ($count{ $ids[$i] } // 0) != $want;
		}
		ok(@ids == 10 && !@wrong, "$from to $to, $what: each event notified as its writer's mode says")
		  or diag("wrong: @wrong");
		is($by_mode, join(',', $user eq $open ? ((($from) x 6), (($to) x 4)) : (($to) x 10)),
			"$from to $to, $what: the mode each event was written in");
	}
}
set_mode('notify', 'commit');

# ---- 2. The payloads of the same calls, whoever sends them -------------

# The same calls, in a fresh database per mode, with the clock pinned: ids
# and times are then the same in each, and so must be every payload but
# for global_position. Every kind of event with details or free text.
my $long_reason = 'user cancelled: ' . ('ü' x 600);    # clipped at 800 bytes
my $long_slug = 'x' . ('é' x 150);                     # invalid, clipped at 200 bytes
my $clock = "SET provider_connections.test_clock = '2026-01-05 06:07:08.123456+00';\n";
# A first call, so that a worker starts before the calls compared.
my $first = $clock . "SELECT ok FROM provider_record_sync('00000000-0000-0000-0000-000000000000');\n";
my $calls = $clock . <<"SQL";
SET TimeZone = 'Europe/Paris';
SELECT ok FROM provider_connect('11111111-1111-1111-1111-111111111111', '$provider', 'schwab', '\\x01', 'oauth2', '2030-01-01', 'Main');
SELECT ok FROM provider_connect('11111111-1111-1111-1111-111111111111', '$provider', 'schwab', '\\x01');
SELECT ok FROM provider_connect('11111111-1111-1111-1111-111111111111', '$provider', 'gmail', '\\x01');
SELECT ok FROM provider_begin_connect('11111111-1111-1111-1111-111111111111', '$provider', 'schwab', 'Pending');
SELECT ok FROM provider_mark_failed((SELECT id FROM provider_connections WHERE status = 'pending'), '$long_reason');
SELECT ok FROM provider_mark_failed('00000000-0000-0000-0000-000000000000', 'no such connection');
SELECT ok FROM provider_mark_revoked((SELECT id FROM provider_connections WHERE alias = 'Main'), 'invalid_grant');
SELECT ok FROM provider_mark_expired((SELECT id FROM provider_connections WHERE provider_slug = 'gmail'));
SELECT ok FROM provider_refresh_tokens((SELECT id FROM provider_connections WHERE provider_slug = 'gmail'), '\\x02');
UPDATE provider_connections SET status = 'expired' WHERE status = 'active';
SELECT ok FROM provider_connect('11111111-1111-1111-1111-111111111111', '$provider', '$long_slug', '\\x01');
SELECT ok FROM provider_connect('11111111-1111-1111-1111-111111111111', '$provider', 'schwab', '\\x03',
                                connection_id => (SELECT id FROM provider_connections WHERE alias = 'Main'));
SELECT count(*) FROM provider_events_since(0, 0);
SELECT provider_purge_events('2000-01-01', 1);
SQL

my %payloads;
for my $payload ('full', 'ids')
{
	set_mode('notify_payload', $payload);
	for my $mode ('commit', 'worker')
	{
		set_mode('notify', $mode);
		my $db = "p_${payload}_$mode";
		$node->safe_psql('postgres',
			"CREATE DATABASE $db ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
		$node->safe_psql($db, 'CREATE EXTENSION provider_connections CASCADE');
		start_listener($db);
		$node->safe_psql($db, $first);
		wait_for_worker($db) if $mode eq 'worker';
		$node->safe_psql($db, $calls);
		my $rows = $node->safe_psql($db, 'SELECT count(*) FROM provider_audit_log');
		my @got = heard($db);
		is(scalar(@got), $rows, "$payload, $mode: one notification per audit row ($rows)");
		$payloads{$payload}{$mode} = \@got;
		$listener{$db}->quit;
	}
}

my $json = JSON::PP->new->utf8(0);
my @full_keys = qw(event_type event_id call_id audit_id occurred_at user_id connection_id provider_id provider_slug);
for my $payload ('full', 'ids')
{
	my @c = @{ $payloads{$payload}{commit} };
	my @w = @{ $payloads{$payload}{worker} };
	my $same = @c == @w && @c > 0;
	my %kinds;
	for my $i (0 .. $#c)
	{
		my $cp = $c[$i];
		my $wp = $w[$i] // '';
		my ($pos) = $wp =~ /"global_position":(\d+)/;
		my $stripped = $wp =~ s/,"global_position":\d+//r;
		if (!defined $pos || $cp =~ /global_position/)
		{
			$same = 0;
			diag("$payload: global_position only in worker mode: commit $cp, worker $wp");
		}
		if ($stripped ne $cp)
		{
			$same = 0;
			diag("$payload: payload $i differs:\n  commit $cp\n  worker $wp");
		}
		# Key by key, too (and no key twice).
		my $cj = $json->decode($cp);
		my $wj = $json->decode($wp);
		delete $wj->{global_position};
		my @ck = $cp =~ /"([a-z_]+)":/g;
		my %seen;
		if (grep { $seen{$_}++ } @ck)
		{
			$same = 0;
			diag("$payload: a key twice in $cp");
		}
		for my $k (sort(keys %$cj), sort(keys %$wj))
		{
			next if JSON::PP->new->canonical->encode([ $cj->{$k} ]) eq
			  JSON::PP->new->canonical->encode([ $wj->{$k} ]);
			$same = 0;
			diag("$payload: key $k differs in payload $i");
		}
		$kinds{ $cj->{event_type} } = [ sort keys %$cj ];
	}
	ok($same, "$payload: every payload is the same in commit and worker mode but for global_position ("
		  . scalar(@c) . ' payloads)');
	if ($payload eq 'ids')
	{
		my @bad = grep { join(',', @{ $kinds{$_} }) ne 'audit_id,call_id,event_id,event_type' } keys %kinds;
		ok(!@bad, 'ids: event_type, event_id, call_id and audit_id only') or diag("@bad");
		next;
	}
	# The keys each kind carries, as the README lists them: reason on
	# Failed events, needs_user_action on ProviderTokenRefreshFailed, and
	# the details of marks, status changes and purges.
	my %details = (
		ProviderFailureMarkAttempted => 'reason',
		ProviderFailureMarkSucceeded => 'reason',
		ProviderRevocationMarkAttempted => 'reason',
		ProviderRevocationMarkSucceeded => 'reason',
		ProviderConnectionStatusChanged => 'new_status,old_status,role',
		ProviderEventsPurged => 'audit_rows,before,positions,up_to_position');
	my @bad;
	for my $kind (sort keys %kinds)
	{
		my @want = (@full_keys, split(/,/, $details{$kind} // ''));
		push @want, 'reason' if $kind =~ /Failed$/ && !grep { $_ eq 'reason' } @want;
		push @want, 'needs_user_action' if $kind eq 'ProviderTokenRefreshFailed';
		my $want = join ',', sort @want;
		my $got = join ',', @{ $kinds{$kind} };
		push @bad, "$kind: $got, not $want" if $got ne $want;
	}
	ok(!@bad && keys %kinds >= 15, 'full: each kind carries the keys the README lists (' . scalar(keys %kinds) . ' kinds)')
	  or diag(join("\n", @bad));
	# The clipped free text, as the audit row keeps it.
	my ($mark) = grep { /"event_type":"ProviderFailureMarkSucceeded"/ } @c;
	my $reason = $json->decode($mark // '{}')->{reason} // '';
	ok(length($reason) == 800 && index($long_reason, $reason) == 0,
		'full: the long reason is clipped at a character boundary, in both modes alike');
	my ($failed) = grep { /"event_type":"ProviderFailureMarkFailed"/ } @c;
	like($failed // '', qr/"reason":"Connection not found"/i,
		'full: a failed mark says why it failed (its column), not the reason it was asked for');
}

done_testing();
