# t/009_consumer.pl: examples/consumer.py, an event consumer on the feed,
# sends each e-mail exactly once while callers write events from several
# sessions (some of their transactions rolled back) and the consumer is
# SIGKILLed twice mid-stream and restarted, with a second instance of the
# same consumer running beside it from the first restart on.
#
# The consumer runs as a role with only the grants README.md's security
# model gives an event consumer (plus CREATE on the database for its first
# run, revoked after it), the callers as the README's application role.
# The first kill lands inside a batch transaction, after the consumer
# inserted some of the batch's e-mails: a session of the test holds an
# uncommitted row with the key of a later e-mail of that batch, the
# consumer's INSERT waits for it, and the kill comes then; nothing of that
# batch may remain. The second lands wherever the consumer is once it has
# committed a few batches again and the load is about half done.
#
# When the load has ended and the consumer has caught up with the feed
# head, the e-mails must match the audit log exactly (every *Succeeded
# event and every ProviderTokenRefreshFailed with needs_user_action: none
# missing, none extra, none twice, none for a rolled-back call), the stored
# position must be the feed head, and no INSERT of the consumer may have
# conflicted (its INSERTs are plain: a duplicate would have stopped it with
# an error, and the server would have logged it; at the end a consumer set
# back to position 0 shows that it does). A consumer whose events were then
# purged before it handled them stops with an error naming the purge
# horizon, and with --skip-purged says so and goes on after it. In
# notify = commit mode, then in notify = worker mode.
#
# Kills are placed by progress (locks, batch lines, rows written), never by
# a sleep; the load is throttled pgbench with a fixed transaction count.
#
# Needs examples/ beside t/ (scripts/common.sh's tap_prepare copies it) and
# /usr/bin/python3 with psycopg 3 (Debian's python3-psycopg).
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
use Time::HiRes qw(usleep);

my $python   = '/usr/bin/python3';
my $consumer = "$FindBin::RealBin/../examples/consumer.py";
# A plain failure, not BAIL_OUT: the other TAP files still run.
for my $missing (
	[ !-r $consumer, "$consumer is missing: the TAP copy of the tree must include examples/ (tap_prepare)" ],
	[ system($python, '-c', 'import psycopg') != 0,
	  "$python cannot import psycopg (Debian: apt-get install python3-psycopg)" ])
{
	next unless $missing->[0];
	fail($missing->[1]);
	done_testing();
	exit 1;
}

my $clients = 4;
my $per_client = $ENV{CONSUMER_TXNS} // 600;    # transactions per pgbench client
my $rate = 240;    # transactions per second, all clients: about 10 s of load
my $batch = 50;    # events per consumer transaction
my $kill_after = 3;    # batches consumer A2 commits before the second kill
my $timeout = $PostgreSQL::Test::Utils::timeout_default;

# The callers' transactions. User ids c0...01 to c0...40; each call's
# arguments are valid, the outcomes vary (not_active refreshes ask the user
# to reconnect, refreshes and disconnects of no connection fail). Each
# transaction locks at most one row it did not create, so none deadlocks.
my $user = q{('c0000000-0000-0000-0000-' || lpad(:u::text, 12, '0'))::uuid};
my %scripts = (
	connect => qq{\\set u random(1, 40)
SELECT provider_connect($user, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
                        convert_to('token-' || :u, 'UTF8'), 'oauth2', now() + interval '1 hour');
},
	refresh => qq{\\set u random(1, 40)
\\set k random(0, 2)
SELECT provider_refresh_tokens((SELECT id FROM provider_connections_overview WHERE user_id = $user
                                 ORDER BY created_at DESC OFFSET :k LIMIT 1),
                               convert_to('refreshed', 'UTF8'), now() + interval '1 hour');
},
	disconnect => qq{\\set u random(1, 40)
SELECT provider_disconnect($user, (SELECT id FROM provider_connections_overview
                                   WHERE user_id = $user AND status = 'active'
                                   ORDER BY created_at LIMIT 1));
},
	# Four calls in one transaction, on the connection it creates.
	multi => qq{\\set u random(1, 40)
BEGIN;
SELECT (provider_connect($user, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'chase',
                         convert_to('multi', 'UTF8'))).connection_id AS cid \\gset
SELECT provider_refresh_tokens(':cid', convert_to('multi-2', 'UTF8'));
SELECT provider_disconnect($user, ':cid');
SELECT provider_refresh_tokens(':cid', convert_to('multi-3', 'UTF8'));
COMMIT;
},
	# The same, and a refresh of another connection, rolled back: marked by
	# application_name, so that a surviving row would show.
	rollback => qq{\\set u random(1, 40)
BEGIN;
SET LOCAL application_name = 'rolled_back';
SELECT (provider_connect($user, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'fidelity',
                         convert_to('doomed', 'UTF8'))).connection_id AS cid \\gset
SELECT provider_refresh_tokens(':cid', convert_to('doomed-2', 'UTF8'));
SELECT provider_disconnect($user, ':cid');
SELECT provider_refresh_tokens(':cid', convert_to('doomed-3', 'UTF8'));
SELECT provider_refresh_tokens((SELECT id FROM provider_connections_overview WHERE user_id = $user
                                 ORDER BY created_at DESC LIMIT 1), convert_to('doomed-4', 'UTF8'));
ROLLBACK;
},
	# A pending connection (the OAuth redirect started) that failed, then
	# was completed: ProviderConnectionBeginSucceeded, ProviderFailureMarkSucceeded,
	# then ProviderConnectionSucceeded followed by ProviderConnectionRecovered,
	# a type whose name does not end in Succeeded.
	recover => qq{\\set u random(1, 40)
BEGIN;
SELECT (provider_begin_connect($user, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab'))
       .connection_id AS cid \\gset
SELECT provider_mark_failed(':cid', 'the provider refused the authorization');
SELECT provider_connect($user, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab',
                        convert_to('recover', 'UTF8'), connection_id => ':cid');
COMMIT;
},);
# name, weight, calls committed per transaction
my @mix = ([ 'connect', 4, 1 ], [ 'refresh', 3, 1 ], [ 'disconnect', 2, 1 ],
	[ 'multi', 1, 4 ], [ 'recover', 1, 3 ], [ 'rollback', 2, 0 ]);

# The e-mail each event asks for, as consumer.py's email_kind decides it.
my $expected_sql = q{
SELECT a.event_id, a.id AS audit_id, p.global_position, a.user_id,
       CASE WHEN a.event_type LIKE '%Succeeded' THEN coalesce(a.action, a.event_type)
            ELSE 'reconnect_required' END AS kind
  FROM provider_audit_log a LEFT JOIN provider_event_positions p ON p.audit_id = a.id
 WHERE a.event_type LIKE '%Succeeded'
    OR (a.event_type = 'ProviderTokenRefreshFailed' AND a.needs_user_action)};

# start_consumer(NODE, MODE, LABEL): consumer.py in the background, its
# stdout and stderr in files of the test's log directory (kept on failure).
sub start_consumer
{
	my ($node, $mode, $label, @extra) = @_;
	my $base = "$PostgreSQL::Test::Utils::log_path/009_consumer_${mode}_$label";
	my $c = { label => $label, out => "$base.out", err => "$base.err",
		timer => IPC::Run::timeout(5 * $timeout) };
	$c->{h} = IPC::Run::start(
		[ $python, $consumer, $node->connstr('consumer') . ' user=mailer',
		  '--name', 'emails', '--batch', $batch, '--timeout', '2', @extra ],
		'<', \undef, '>', $c->{out}, '2>', $c->{err}, $c->{timer});
	return $c;
}

# output(C): what consumer C printed so far, and its batch lines.
sub output
{
	my ($c) = @_;
	my $out = -e $c->{out} ? slurp_file($c->{out}) : '';
	return ($out, [ grep { /^batch / } split /\n/, $out ]);
}

# errors(C): what consumer C wrote to stderr.
sub errors
{
	my ($c) = @_;
	return -e $c->{err} ? slurp_file($c->{err}) : '';
}

# stop_consumer(C[, SIGNAL]): signals C (unless SIGNAL is undef) and reaps
# it; returns its wait status (undef if it did not exit within a minute,
# after killing it).
sub stop_consumer
{
	my ($c, $signal) = @_;
	$c->{h}->signal($signal) if defined $signal;
	$c->{timer}->start(60);
	my $status;
	eval {
		$c->{h}->finish;
		$status = $c->{h}->full_result(0);
	};
	if ($@)
	{
		diag("consumer $c->{label} did not exit" . (defined $signal ? " after SIG$signal" : '') . ": $@");
		$c->{h}->kill_kill;
	}
	$c->{status} = $status;
	return $status;
}

# wait_until(WHAT, COND, CONSUMERS): polls COND every 50 ms; false after
# the default timeout, or as soon as a consumer writes to stderr (an error
# stopped it).
sub wait_until
{
	my ($what, $cond, @consumers) = @_;
	my $deadline = time + $timeout;
	while (1)
	{
		return 1 if $cond->();
		for my $c (@consumers)
		{
			if (errors($c) ne '')
			{
				diag("while waiting for $what, consumer $c->{label} failed:\n" . errors($c));
				return 0;
			}
		}
		if (time > $deadline)
		{
			diag("timed out waiting for $what");
			return 0;
		}
		usleep(50_000);
	}
}

# run_mode(MODE): the whole scenario with provider_connections.notify = MODE.
sub run_mode
{
	my ($mode) = @_;
	my $node = pc_node("consumer_$mode", conf => "provider_connections.notify = $mode\n");
	fresh_db($node, 'consumer');
	my $log_start = log_size($node);

	# Roles as README.md's security model grants them: the application
	# (its grants as written there, but for the feed), and an event consumer
	# with the feed's grants only (plus CREATE on the database to make its
	# own schema on its first run).
	$node->safe_psql('consumer', q{
CREATE ROLE app LOGIN;
GRANT USAGE ON SCHEMA public TO app;
GRANT EXECUTE ON FUNCTION provider_connect(uuid, uuid, text, bytea, text, timestamptz, text, uuid),
                          provider_begin_connect(uuid, uuid, text, text, text),
                          provider_disconnect(uuid, uuid),
                          provider_refresh_tokens(uuid, bytea, timestamptz, text, uuid),
                          provider_mark_failed(uuid, text),
                          provider_record_sync(uuid) TO app;
GRANT SELECT ON provider_connections_overview TO app;
GRANT SELECT ON provider_audit_log TO app;
CREATE ROLE mailer LOGIN;
GRANT USAGE ON SCHEMA public TO mailer;
GRANT EXECUTE ON FUNCTION provider_events_since(bigint, integer, boolean) TO mailer;
GRANT CREATE ON DATABASE consumer TO mailer;
});

	my $work = PostgreSQL::Test::Utils::tempdir;
	my @files;
	for my $m (@mix)
	{
		append_to_file("$work/$m->[0].sql", $scripts{ $m->[0] });
		push @files, '-f', "$work/$m->[0].sql\@$m->[1]";
	}
	# A fixed count (-t) so every committed call can be accounted for, one
	# pgbench thread (see 001_fuzz.pl), and a rate so that the load lasts
	# long enough for the kills and leaves the consumer some CPU.
	my $pgbench_log = "$PostgreSQL::Test::Utils::log_path/009_consumer_${mode}_pgbench.out";
	my $pgbench = IPC::Run::start(
		[ 'pgbench', '-h', $node->host, '-p', $node->port, '-U', 'app', '-n',
		  '-c', $clients, '-j', '1', '-t', $per_client, '-R', $rate, @files, 'consumer' ],
		'<', \undef, '>', $pgbench_log, '2>&1', IPC::Run::timeout(5 * $timeout));
	my $pgbench_said = sub { return -e $pgbench_log ? slurp_file($pgbench_log) : '' };

	my $audit_rows = sub {
		return $node->safe_psql('consumer', 'SELECT count(*) FROM provider_audit_log');
	};
	my $stored = sub {
		return $node->safe_psql('consumer',
			"SELECT position FROM consumer.consumer_position WHERE consumer = 'emails'");
	};
	ok(wait_until('a backlog of events',
			sub { $audit_rows->() >= 600 || $pgbench_said->() =~ /aborted|error/i }),
		"the load is under way ($mode)");

	# The consumer's first run makes its schema (here with --init, as at a
	# deployment); then its role no longer needs CREATE on the database.
	my ($init_out, $init_err) = ('', '');
	IPC::Run::run(
		[ $python, $consumer, '--init', $node->connstr('consumer') . ' user=mailer' ],
		'<', \undef, '>', \$init_out, '2>', \$init_err, IPC::Run::timeout($timeout));
	is($init_out, "init consumer=emails schema=consumer\n",
		"consumer.py --init makes its schema ($mode)")
	  or diag("stderr: $init_err");
	$node->safe_psql('consumer', 'REVOKE CREATE ON DATABASE consumer FROM mailer');

	# Kill 1, inside a batch transaction after it inserted an e-mail, at a
	# point the test chooses: a session of ours holds an uncommitted e-mail
	# row for an event the consumer reaches in its third batch or later,
	# with an earlier e-mail in the same batch, so the consumer's INSERT of
	# that row waits on our transaction, its earlier INSERTs done. The
	# consumer starts at 0 and reads full batches of the events numbered now,
	# so batch k holds the events ranked (k-1)*batch+1 .. k*batch.
	$node->safe_psql('consumer', 'SELECT count(*) FROM provider_events_since(0, 0)');
	my ($blocker, $blocked_batch, $before) = split /\|/, $node->safe_psql('consumer', qq{
WITH expected AS ($expected_sql),
     ranked AS (SELECT p.global_position, x.event_id,
                       (row_number() OVER (ORDER BY p.global_position) - 1) / $batch + 1 AS batch
                  FROM provider_event_positions p LEFT JOIN expected x ON x.audit_id = p.audit_id)
SELECT r.event_id, r.batch,
       (SELECT max(b.global_position) FROM ranked b WHERE b.batch = r.batch - 1)
  FROM ranked r
 WHERE r.event_id IS NOT NULL AND r.batch >= 3
   AND EXISTS (SELECT 1 FROM ranked e WHERE e.batch = r.batch AND e.event_id IS NOT NULL
                  AND e.global_position < r.global_position)
 ORDER BY r.global_position LIMIT 1});
	ok(defined $before && $before ne '', "an e-mail to hold up the consumer, in batch "
		  . ($blocked_batch // '?') . " ($mode)");
	my $holder = $node->background_psql('consumer');
	$holder->query_safe('BEGIN');
	$holder->query_safe(qq{
INSERT INTO consumer.consumer_emails (event_id, audit_id, global_position, user_id, kind)
SELECT event_id, audit_id, global_position, user_id, kind FROM ($expected_sql) x
 WHERE event_id = '$blocker'});
	my $holder_xid = $holder->query_safe('SELECT pg_current_xact_id()::xid');

	# $main is killed twice; $twin, another instance of the same consumer,
	# runs beside it from the first restart on.
	my @incarnations;
	my $main = start_consumer($node, $mode, 'A1');
	push @incarnations, $main;
	ok(wait_until(
			"consumer A1 to wait for our e-mail row",
			sub {
				$node->safe_psql('consumer', qq{SELECT count(*) FROM pg_locks
				    WHERE locktype = 'transactionid' AND transactionid = '$holder_xid' AND NOT granted})
				  eq '1';
			},
			$main),
		"consumer A1 waits inside batch $blocked_batch ($mode)");
	is($stored->(), $before, "consumer A1 committed the batches before it ($mode)");
	my @kills;
	my $kill = sub {
		my ($why) = @_;
		my $label = $main->{label};
		my $rows = $audit_rows->();
		my $position = $stored->();
		my $status = stop_consumer($main, 'KILL');
		ok(defined $status && ($status & 127) == 9, "consumer $label was killed by SIGKILL ($mode)")
		  or diag('wait status: ' . ($status // 'none'));
		push @kills, { label => $label, rows => $rows, position => $position };
		note("$mode: killed consumer $label $why, with $rows audit rows written, stored position $position");
	};
	$kill->("inside batch $blocked_batch");
	$holder->query_safe('ROLLBACK');
	$holder->quit;
	# The killed consumer's backend notices only once our transaction is
	# gone; then its batch rolls back.
	ok(wait_until('the killed consumer\'s sessions to end',
			sub { $node->safe_psql('consumer',
				"SELECT count(*) FROM pg_stat_activity WHERE usename = 'mailer'") eq '0' }),
		"the killed consumer's sessions ended ($mode)");
	is($node->safe_psql('consumer',
			"SELECT count(*) FROM consumer.consumer_emails WHERE global_position > $before"),
		'0', "nothing of the killed batch remains ($mode)");
	is($stored->(), $before, "the stored position is still the one before the killed batch ($mode)");

	$main = start_consumer($node, $mode, 'A2');
	my $twin = start_consumer($node, $mode, 'B');
	push @incarnations, $main, $twin;

	# Kill 2 wherever the consumer is once it has worked a while again and
	# the load is about half done.
	my $half = $clients * $per_client;
	ok(wait_until("$kill_after batches of consumer A2 and $half audit rows",
			sub { scalar(@{ (output($main))[1] }) >= $kill_after && $audit_rows->() >= $half },
			$main, $twin),
		"consumer A2 committed $kill_after batches ($mode)");
	$kill->('mid-stream');
	$main = start_consumer($node, $mode, 'A3');
	push @incarnations, $main;

	my $pgbench_ok = eval { $pgbench->finish; 1 };
	ok($pgbench_ok && $pgbench->result == 0, "pgbench ran every transaction ($mode)")
	  or diag("pgbench: " . ($@ || 'exit ' . $pgbench->result) . "\n" . $pgbench_said->());
	my $pgbench_out = $pgbench_said->();
	my $total_rows = $audit_rows->();
	for my $kill (@kills)
	{
		ok($kill->{rows} < $total_rows,
			"consumer $kill->{label} was killed while the load ran ($kill->{rows} of $total_rows audit rows written) ($mode)");
	}

	# Number everything committed, as a reader would, then wait for the
	# consumer to reach the head.
	$node->safe_psql('consumer', 'SELECT count(*) FROM provider_events_since(0, 0)');
	my $head = $node->safe_psql('consumer',
		'SELECT coalesce(max(global_position), 0) FROM provider_event_positions');
	my $caught_up = wait_until(
		"the consumer to reach position $head",
		sub {
			$node->safe_psql('consumer',
				"SELECT position FROM consumer.consumer_position WHERE consumer = 'emails'") eq $head;
		},
		$main, $twin);
	ok($caught_up, "the consumer caught up with the feed head, position $head ($mode)");

	for my $c ($main, $twin)
	{
		my $status = stop_consumer($c, 'TERM');
		ok(defined $status && $status == 0, "consumer $c->{label} exits 0 on SIGTERM ($mode)")
		  or diag('wait status: ' . ($status // 'none'));
		like((output($c))[0], qr/^stop consumer=emails position=\d+$/m,
			"consumer $c->{label} finished its batch and said so ($mode)");
	}
	for my $c (@incarnations)
	{
		is(errors($c), '', "consumer $c->{label} reported no error ($mode)");
	}

	# The load's accounting: every committed call wrote its Attempted row,
	# nothing of a rolled-back transaction remains.
	my $calls = 0;
	my @counts;
	for my $i (0 .. $#mix)
	{
		my $n = pgbench_script_count($pgbench_out, $i + 1) // 0;
		push @counts, "$mix[$i][0] $n";
		$calls += $n * $mix[$i][2];
	}
	is($node->safe_psql('consumer',
			"SELECT count(*) FROM provider_audit_log WHERE event_type LIKE '%Attempted'"),
		$calls, "every committed call, and no rolled-back one, wrote its events ($mode)")
	  or diag("pgbench said:\n$pgbench_out");
	is($node->safe_psql('consumer',
			"SELECT count(*) FROM provider_audit_log WHERE context->>'application_name' = 'rolled_back'"),
		'0', "no event of a rolled-back transaction was committed ($mode)");
	is($node->safe_psql('consumer',
			'SELECT count(*) FROM provider_audit_log a WHERE NOT EXISTS
			   (SELECT 1 FROM provider_event_positions p WHERE p.audit_id = a.id)'),
		'0', "every committed event is in the feed ($mode)");

	# The e-mails against the audit log.
	my $figures = $node->safe_psql('consumer', qq{
WITH expected AS ($expected_sql),
     emails AS (SELECT * FROM consumer.consumer_emails)
SELECT (SELECT count(*) FROM provider_event_positions),
       (SELECT count(*) FROM expected),
       (SELECT count(*) FROM emails),
       (SELECT count(*) FROM expected x WHERE NOT EXISTS (SELECT 1 FROM emails e WHERE e.event_id = x.event_id)),
       (SELECT count(*) FROM emails e WHERE NOT EXISTS (SELECT 1 FROM expected x WHERE x.event_id = e.event_id)),
       (SELECT count(*) - count(DISTINCT event_id) FROM emails),
       (SELECT count(*) FROM emails e JOIN expected x USING (event_id)
         WHERE (e.audit_id, e.global_position, e.user_id, e.kind)
               IS DISTINCT FROM (x.audit_id, x.global_position, x.user_id, x.kind)),
       (SELECT position FROM consumer.consumer_position WHERE consumer = 'emails'),
       (SELECT string_agg(kind || ' ' || n, ', ' ORDER BY kind)
          FROM (SELECT kind, count(*) AS n FROM emails GROUP BY kind) k)});
	my ($events, $expected, $emails, $missed, $extra, $duplicated, $wrong, $position, $kinds) =
	  split /\|/, $figures;
	my $ok = is($missed, '0', "no e-mail missed ($mode)");
	$ok &= is($extra,      '0', "no e-mail without its event ($mode)");
	$ok &= is($duplicated, '0', "no e-mail twice ($mode)");
	$ok &= is($wrong,      '0', "each e-mail names its event's audit id, position, user and kind ($mode)");
	$ok &= is($emails, $expected, "one e-mail per event that asks for one ($mode)");
	$ok &= is($position, $head, "the stored position is the feed head ($mode)");
	unless ($ok)
	{
		diag("differing rows (at most 20):\n"
			  . $node->safe_psql('consumer', qq{
WITH expected AS ($expected_sql)
SELECT coalesce(x.event_id, e.event_id), x.audit_id, x.global_position, x.kind,
       e.audit_id, e.global_position, e.kind, count(*) OVER (PARTITION BY e.event_id)
  FROM expected x FULL JOIN consumer.consumer_emails e USING (event_id)
 WHERE x.event_id IS NULL OR e.event_id IS NULL
    OR (e.audit_id, e.global_position, e.user_id, e.kind)
       IS DISTINCT FROM (x.audit_id, x.global_position, x.user_id, x.kind)
 LIMIT 20}));
	}

	# What the consumers printed: no batch committed twice (each batch
	# line's end position appears once across every incarnation), no more
	# events handled than the feed holds, and notifications did wake them.
	my %ends;
	my ($handled, $lines, $notified) = (0, 0, 0);
	for my $c (@incarnations)
	{
		for my $line (@{ (output($c))[1] })
		{
			my ($end, $n, $why) = $line =~ /position=(\d+) handled=(\d+) emails=\d+ wake=(\w+)/
			  or next;
			$ends{$end}++;
			$handled += $n;
			$lines++;
			$notified++ if $why eq 'notify';
		}
	}
	is(scalar(grep { $ends{$_} > 1 } keys %ends), 0,
		"no two batches, in any instance, ended at the same position ($mode)");
	ok($handled <= $events, "the batch lines handled at most the feed's $events events ($mode)");
	ok($notified, "notifications woke the consumer ($mode)");

	my $dupes = () = log_since($node, $log_start) =~ /duplicate key value/g;
	is($dupes, 0, "no INSERT conflicted: the server logged no duplicate key ($mode)");
	my @crashes = crash_lines($node, $log_start);
	is(scalar(@crashes), 0, "no backend crashed ($mode)")
	  or diag(join("\n", @crashes));

	note(sprintf(
			'%s mode: %d events in the feed (head %d), %d batch lines handling %d of them, '
			  . '%d woken by a notification; e-mails: %d expected, %d sent (%s), %d missed, '
			  . '%d extra, %d duplicated; kills: %d (%s); calls committed: %d (%s)',
			$mode, $events, $head, $lines, $handled, $notified, $expected, $emails,
			$kinds // '', $missed, $extra, $duplicated, scalar(@kills),
			join(', ', map { "$_->{label} at stored position $_->{position}" } @kills),
			$calls, join(', ', @counts)));

	# SIGTERM inside a batch: the consumer finishes the batch, commits it and
	# exits 0. New events, the last e-mail of their batch held up by our
	# session as for the first kill; the signal comes while the consumer
	# waits for it, and our session lets go once the consumer said it got
	# the signal.
	$node->safe_psql('consumer', qq{
SELECT provider_connect(('c0000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid,
                        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'chase', '\\x01')
  FROM generate_series(1, 5) g;
SELECT count(*) FROM provider_events_since(0, 0);});
	my $new_head = $node->safe_psql('consumer', 'SELECT max(global_position) FROM provider_event_positions');
	my $last_email = $node->safe_psql('consumer',
		"SELECT event_id FROM ($expected_sql) x WHERE global_position > $head ORDER BY global_position DESC LIMIT 1");
	$holder = $node->background_psql('consumer');
	$holder->query_safe('BEGIN');
	$holder->query_safe(qq{
INSERT INTO consumer.consumer_emails (event_id, audit_id, global_position, user_id, kind)
SELECT event_id, audit_id, global_position, user_id, kind FROM ($expected_sql) x
 WHERE event_id = '$last_email'});
	$holder_xid = $holder->query_safe('SELECT pg_current_xact_id()::xid');
	my $last = start_consumer($node, $mode, 'C');
	push @incarnations, $last;
	ok(wait_until(
			'consumer C to wait for our e-mail row',
			sub {
				$node->safe_psql('consumer', qq{SELECT count(*) FROM pg_locks
				    WHERE locktype = 'transactionid' AND transactionid = '$holder_xid' AND NOT granted})
				  eq '1';
			},
			$last),
		"consumer C waits inside its batch ($mode)");
	$last->{h}->signal('TERM');
	ok(wait_until('consumer C to get SIGTERM',
			sub { (output($last))[0] =~ /^stopping on SIGTERM/m }, $last),
		"consumer C got SIGTERM inside its batch ($mode)");
	$holder->query_safe('ROLLBACK');
	$holder->quit;
	my $status = stop_consumer($last);
	ok(defined $status && $status == 0, "consumer C exits 0 after finishing its batch ($mode)")
	  or diag('wait status: ' . ($status // 'none') . "\nstderr: " . errors($last));
	like((output($last))[0],
		qr/^stopping on SIGTERM.*\n^batch consumer=emails position=$new_head handled=\d+ emails=5 .*\n^stop /m,
		"consumer C committed the batch it was in, then stopped ($mode)");
	is($stored->(), $new_head, "the stored position includes that batch ($mode)");
	is($node->safe_psql('consumer',
			"SELECT count(*) FROM consumer.consumer_emails WHERE global_position > $head"),
		'5', "and its 5 e-mails ($mode)");

	# The second guard is live: a consumer whose position is set back (as a
	# position not committed with the work would be) stops at its first
	# duplicate e-mail, with an error, instead of skipping it; so the
	# clean runs above mean no INSERT conflicted.
	$node->safe_psql('consumer',
		"UPDATE consumer.consumer_position SET position = 0 WHERE consumer = 'emails'");
	my ($dup_out, $dup_err) = ('', '');
	IPC::Run::run(
		[ $python, $consumer, $node->connstr('consumer') . ' user=mailer',
		  '--batch', $batch, '--timeout', '2' ],
		'<', \undef, '>', \$dup_out, '2>', \$dup_err, IPC::Run::timeout($timeout));
	my $dup_status = $?;
	ok($dup_status >> 8 == 1 && $dup_err =~ /UniqueViolation: duplicate key value/,
		"a consumer set back to position 0 stops at the first duplicate, exit 1 ($mode)")
	  or diag("exit status $dup_status\nstdout: $dup_out\nstderr: $dup_err");

	# Behind a purge: the events up to position 10 are purged while the
	# consumer (its e-mails emptied, set back to 0) has not handled them.
	# It stops with an error naming the purge horizon, handling nothing;
	# with --skip-purged it says so and handles every event after the
	# horizon, each once.
	$node->safe_psql('consumer', q{
DELETE FROM consumer.consumer_emails;
UPDATE consumer.consumer_position SET position = 0 WHERE consumer = 'emails';
SELECT provider_purge_events(now() + interval '1 day', 10);});
	my $horizon = $node->safe_psql('consumer', 'SELECT purged_up_to FROM provider_feed_horizon');
	my ($behind_out, $behind_err) = ('', '');
	# A consumer that is not stopped runs on: the timeout ends it, as a failure.
	my $behind_status = eval {
		IPC::Run::run(
			[ $python, $consumer, $node->connstr('consumer') . ' user=mailer',
			  '--batch', $batch, '--timeout', '2' ],
			'<', \undef, '>', \$behind_out, '2>', \$behind_err, IPC::Run::timeout($timeout));
		$?;
	} // -1;
	ok($behind_status >> 8 == 1
		  && $behind_err =~ /events it had not handled were purged: feed position 0 is behind the purge horizon $horizon\b/
		  && $behind_err =~ /--skip-purged/,
		"a consumer behind a purge stops, naming the horizon ($horizon) and --skip-purged ($mode)")
	  or diag("exit status $behind_status\nstdout: $behind_out\nstderr: $behind_err");
	is($node->safe_psql('consumer', q{SELECT (SELECT position FROM consumer.consumer_position WHERE consumer = 'emails')
	                                      || '/' || (SELECT count(*) FROM consumer.consumer_emails)}),
		'0/0', "it handled nothing ($mode)");
	my $skipper = start_consumer($node, $mode, 'skip', '--skip-purged');
	my $final_head = $node->safe_psql('consumer', 'SELECT provider_feed_head()');
	ok(wait_until("the skipping consumer to reach the head ($final_head)",
			sub { $stored->() eq $final_head }),
		"with --skip-purged it catches up with the head ($mode)");
	stop_consumer($skipper, 'TERM');
	like(errors($skipper), qr/^consumer emails: skipping purged events: feed position 0 is behind the purge horizon $horizon\b/m,
		"and says on stderr that it skipped the purged events ($mode)");
	my $n_expected = $node->safe_psql('consumer', "WITH expected AS ($expected_sql) SELECT count(*) FROM expected");
	is($node->safe_psql('consumer', qq{
WITH expected AS ($expected_sql)
SELECT count(*) || '/' || count(*) FILTER (WHERE c.global_position <= $horizon) || '/'
       || (SELECT count(*) FROM (SELECT event_id, kind FROM expected
                                 EXCEPT SELECT event_id, kind FROM consumer.consumer_emails) m)
  FROM consumer.consumer_emails c}),
		"$n_expected/0/0",
		"after the horizon, every e-mail once: $n_expected, none before it, none missing ($mode)");

	note("$mode mode, events by type, with the SIGTERM check's 5 connects (e-mails): "
		  . $node->safe_psql('consumer', qq{
WITH expected AS ($expected_sql)
SELECT string_agg(format('%s %s (%s)', event_type, n, m), ', ' ORDER BY event_type)
  FROM (SELECT a.event_type, count(*) AS n, count(x.event_id) AS m
          FROM provider_audit_log a LEFT JOIN expected x ON x.audit_id = a.id
         GROUP BY 1) t}));

	unless (Test::More->builder->is_passing)
	{
		for my $c (@incarnations)
		{
			my ($out) = output($c);
			my @lines = split /\n/, $out;
			@lines = @lines[ -30 .. -1 ] if @lines > 30;
			diag("consumer $c->{label} stdout (last 30 lines; whole: $c->{out}):\n"
				  . join("\n", @lines)
				  . "\nstderr:\n"
				  . errors($c));
		}
		diag("pgbench said:\n$pgbench_out");
	}
	$node->stop;
	return;
}

run_mode('commit');
run_mode('worker');
done_testing();
