# t/014_worker.pl: the background workers, as users and operators see them.
#
# A launcher runs, connected to no database; a database gets a worker,
# visible in pg_stat_activity and named in its process title, once a call
# commits events there, and the worker assigns their positions. With
# worker_naptime at an hour, a commit wakes the worker in
# provider_connections.notify = worker mode (rounds then start at most
# every 2 ms, not 5, under a stream of commits) and does not in commit mode,
# where a read of the feed gets its round at once. The worker leaves on DROP
# EXTENSION and comes back after CREATE EXTENSION and a call; DROP DATABASE,
# CREATE DATABASE ... TEMPLATE and ALTER DATABASE RENAME succeed at once
# while it runs (it leaves when asked, without the SIGTERM a held database's
# worker gets after a grace period); worker_databases chooses the databases
# served; a terminated worker is restarted. In worker mode a listener
# receives every event of concurrent callers once, in feed order, with its
# global_position; a failed notifying round is followed by one that assigns
# positions only, and the notifications follow later; and after the worker
# is killed with SIGKILL in the middle of a round (the whole server
# restarts), every committed event has exactly one position and
# notifications resume.
#
# Workers are found by backend_type ('provider_connections worker' and
# 'provider_connections launcher') and database, as an operator finds them.
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
use Time::HiRes qw(time usleep);

# Cluster.pm turns restart_after_crash off; the SIGKILL part is about the
# restart.
my $node = pc_node('worker', conf => "restart_after_crash = on\n");

my $worker_type = 'provider_connections worker';

# show_state(): on a failure, the extension's processes and the end of the
# server log.
sub show_state
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT pid, backend_type, datname, state, wait_event_type, wait_event
		   FROM pg_stat_activity WHERE backend_type LIKE 'provider_connections%'");
	my @log = split /\n/, slurp_file($node->logfile);
	splice(@log, 0, @log - 15) if @log > 15;
	diag("provider_connections processes:\n$out$err\nend of the server log:\n" . join("\n", @log));
	return;
}

# poll(DB, SQL[, SECONDS]): poll_query_until for t, bounded by SECONDS
# (PostgreSQL::Test::Utils' default timeout unless given).
sub poll
{
	my ($db, $sql, $seconds) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $seconds // $PostgreSQL::Test::Utils::timeout_default;
	return $node->poll_query_until($db, $sql);
}

# expect(NAME, DB, SQL[, SECONDS]): SQL becomes true within the bound.
sub expect
{
	my ($name, $db, $sql, $seconds) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $ok = ok(poll($db, $sql, $seconds), $name);
	show_state() unless $ok;
	return $ok;
}

# call(DB): one successful connect (two events).
sub call
{
	my ($db) = @_;
	$node->safe_psql($db, "SELECT ok FROM provider_connect('77777777-0000-0000-0000-000000000001',
		'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\\x01')");
	return;
}

sub workers_sql
{
	my ($db) = @_;
	return "SELECT pid FROM pg_stat_activity WHERE backend_type = '$worker_type' AND datname = '$db'";
}
sub worker_pid { return $node->safe_psql('postgres', workers_sql($_[0])); }
sub has_worker { return "SELECT count(*) = 1 FROM (" . workers_sql($_[0]) . ") w"; }
sub no_worker { return "SELECT count(*) = 0 FROM (" . workers_sql($_[0]) . ") w"; }

# Every audit row has a position (read without asking the feed to assign).
my $all_positioned = "SELECT count(*) = 0 FROM provider_audit_log a
	LEFT JOIN provider_event_positions p ON p.audit_id = a.id WHERE p.audit_id IS NULL";

# set_config(NAME, VALUE[, SHOWN]): cluster-wide (VALUE '' resets), then
# wait until a new session shows SHOWN (default VALUE).
sub set_config
{
	my ($name, $value, $shown) = @_;
	$node->safe_psql('postgres',
		$value ne '' ? "ALTER SYSTEM SET $name = '$value'" : "ALTER SYSTEM RESET $name");
	$node->reload;
	ok(wait_for_setting($node, $name, $shown // $value), "$name shows '" . ($shown // $value) . "'");
	return;
}

# settle(DB): the worker of DB has finished the rounds asked of it so far
# and naps: a round is asked for and awaited (provider_events_since(0, 0)),
# then the worker must be idle in its wait, its last round over for a
# second. A reader that fell back to its own round leaves the worker a
# wake, which it takes at once when it runs, so a second of idleness means
# none is pending. Then only what the test does next can wake it.
sub settle
{
	my ($db) = @_;
	$node->safe_psql($db, 'SELECT count(*) FROM provider_events_since(0, 0)');
	ok(poll('postgres',
			"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = '$worker_type'
			    AND datname = '$db' AND state = 'idle' AND wait_event_type = 'Extension'
			    AND state_change < now() - interval '1 s'"),
		"$db: the worker naps") or show_state();
	return;
}

# ---- listeners ----

# listen_start(DB): a session of DB that LISTENs on provider_events.
sub listen_start
{
	my ($db) = @_;
	my $psql = $node->background_psql($db);
	# Each query gets the whole timeout, not what is left of the session's.
	$psql->set_query_timer_restart;
	$psql->query_safe('LISTEN provider_events');
	return { db => $db, psql => $psql, payloads => [] };
}

# listen_collect(L): adds what L received since the last call.
sub listen_collect
{
	my ($l) = @_;
	my $out = $l->{psql}->query_safe('SELECT 1');
	while ($out =~ /Asynchronous notification "provider_events" with payload "(.*?)" received from server process/g)
	{
		push @{ $l->{payloads} }, $1;
	}
	return;
}

# received(L): "audit_id:global_position" of each notification, in the
# order received.
sub received
{
	my ($l) = @_;
	my @ids;
	for my $p (@{ $l->{payloads} })
	{
		push @ids, "$1:$2" if $p =~ /"audit_id":(\d+).*"global_position":(\d+)/;
	}
	return @ids;
}

# The same from the feed: positions after HEAD, in feed order.
sub feed_ids
{
	my ($db, $head) = @_;
	return split / /, $node->safe_psql($db,
		"SELECT coalesce(string_agg(audit_id || ':' || global_position, ' ' ORDER BY global_position), '')
		   FROM provider_event_positions WHERE global_position > $head");
}
sub feed_head
{
	return $node->safe_psql($_[0], 'SELECT coalesce(max(global_position), 0) FROM provider_event_positions');
}

# expect_received(NAME, L, HEAD): once every event of L's database has its
# position, L has received exactly the events positioned after HEAD, in
# feed order, and nothing twice. (A new listener may also get
# notifications committed just before it listened: PostgreSQL delivers
# those still in the queue, async.c, Exec_ListenPreCommit.) Returns how many
# it received after HEAD.
sub expect_received
{
	my ($name, $l, $head) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $db = $l->{db};
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	my (@want, @got);
	while (1)
	{
		listen_collect($l);
		my $positioned = $node->safe_psql($db, $all_positioned) eq 't';
		@want = feed_ids($db, $head);
		@got = grep { (split /:/)[1] > $head } received($l);
		last if $positioned && @want && "@got" eq "@want";
		last if time > $deadline;
		usleep(100_000);
	}
	my @all = received($l);
	my %seen;
	my @twice = grep { $seen{$_}++ } @all;
	my @positions = map { (split /:/)[1] } @all;
	my @backwards = grep { $positions[$_] <= $positions[ $_ - 1 ] } 1 .. $#positions;
	my $ok = ok(@want && "@got" eq "@want" && !@twice && !@backwards, $name);
	if (!$ok)
	{
		diag("positioned after $head (audit_id:global_position): @want");
		diag("received: @all");
		diag("received twice: @twice") if @twice;
		show_state();
	}
	return scalar(@got);
}

# ---- launcher and worker ----

expect('one launcher runs, connected to no database', 'postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity
	  WHERE backend_type = 'provider_connections launcher' AND datname IS NULL");

fresh_db($node, 'pcw_a');
call('pcw_a');
expect("a call brings a worker to its database, shown as '$worker_type'", 'postgres', has_worker('pcw_a'));
my $pid = worker_pid('pcw_a');
my $title = eval { slurp_file("/proc/$pid/cmdline") } // "(unreadable: $@)";
$title =~ tr/\0/ /;
like($title, qr/provider_connections worker for database pcw_a\b/, 'its process title names the database');
expect("the worker assigns the call's events their positions", 'pcw_a', $all_positioned);

# In worker mode a commit wakes the worker (its notifications wait for the
# round); in commit mode nothing does, so that durable callers do not pay a
# flushed worker commit each: the naptime, or a reader of the feed, does.
# With a naptime of an hour, a round within a minute is a wake.
set_config('provider_connections.notify', 'worker');
set_config('provider_connections.worker_naptime', '1h');
settle('pcw_a');
call('pcw_a');
my $t0 = time;
my $woke = poll('pcw_a', $all_positioned, 60);
ok($woke, sprintf('notify = worker, worker_naptime = 1h: a commit still wakes the worker at once (%.1f s)',
		time - $t0)) or show_state();

# Rounds start at most every 2 ms: a commit's round is not held back
# longer. A procedure commits an event pair (a refresh of no connection)
# about every 2.5 ms. Each round is one transaction, so the distinct xmin
# of the positions those events got count the rounds that numbered them.
# Rounds at most every 5 ms (the pacing 1.4 had first) could have numbered
# them in no more than S / 5 ms + 2 rounds, S the time between the first
# and the last write; the worker must have used more, S / 5 ms + 4. Best of
# three attempts: on a loaded machine a worker kept off the CPU takes
# several commits in one round, while with 5 ms between rounds no attempt
# can pass.
$node->safe_psql('pcw_a', q{
	CREATE PROCEDURE pace_calls(n int) LANGUAGE plpgsql AS $$
	BEGIN
	    FOR i IN 1..n LOOP
	        PERFORM provider_refresh_tokens('00000000-0000-0000-0000-000000000000', '\x01');
	        COMMIT;
	        PERFORM pg_sleep(0.002);
	    END LOOP;
	END $$});
my ($pace_ok, $pace_seen) = (0, '');
for my $attempt (1 .. 3)
{
	settle('pcw_a');
	my $before = $node->safe_psql('pcw_a', 'SELECT coalesce(max(id), 0) FROM provider_audit_log');
	$node->safe_psql('pcw_a', 'CALL pace_calls(80)');
	poll('pcw_a', $all_positioned, 60);
	my $got = $node->safe_psql('pcw_a', qq{
		SELECT count(DISTINCT p.xmin::text) || ' rounds, '
		       || count(*) || ' events over '
		       || round(extract(epoch FROM max(a.occurred_at) - min(a.occurred_at)) * 1000) || ' ms: '
		       || (count(DISTINCT p.xmin::text)
		           > extract(epoch FROM max(a.occurred_at) - min(a.occurred_at)) * 1000 / 5 + 4)
		  FROM provider_audit_log a JOIN provider_event_positions p ON p.audit_id = a.id
		 WHERE a.id > $before});
	$pace_seen .= " [$got]";
	if ($got =~ /: true$/)
	{
		$pace_ok = 1;
		last;
	}
}
ok($pace_ok, "rounds follow commits at most 2 ms apart, not 5:$pace_seen") or show_state();

set_config('provider_connections.notify', '', 'commit');
settle('pcw_a');
call('pcw_a');
# The time a wake would have taken (the line above took well under it);
# nothing can show that no wake comes but waiting.
sleep 2;
sql_ok($node, 'pcw_a', 'notify = commit, worker_naptime = 1h: a commit does not wake the worker',
	"SELECT NOT ($all_positioned)") or show_state();
$node->safe_psql('pcw_a', 'SELECT count(*) FROM provider_events_since(0, 0)');
sql_ok($node, 'pcw_a', 'and a read of the feed gets its round at once', $all_positioned);
set_config('provider_connections.worker_naptime', '', '1s');

# ---- DROP EXTENSION, CREATE EXTENSION, DROP DATABASE ----

$node->safe_psql('pcw_a', 'DROP EXTENSION provider_connections');
expect('the worker leaves after DROP EXTENSION', 'postgres', no_worker('pcw_a'));
$node->safe_psql('pcw_a', 'CREATE EXTENSION provider_connections');
call('pcw_a');
expect('it is back after CREATE EXTENSION and a call', 'postgres', has_worker('pcw_a'));
expect('and assigns positions again', 'pcw_a', $all_positioned);

# A held database's worker is asked to leave, and gets SIGTERM only after a
# grace period of seconds: no SIGTERM means the command did not wait it out.
fresh_db($node, 'pcw_gone');
call('pcw_gone');
if (expect('a worker in pcw_gone before DROP DATABASE', 'postgres', has_worker('pcw_gone')))
{
	my $gone_pid = worker_pid('pcw_gone');
	# A role that does not own the database is refused by DROP DATABASE
	# and ALTER DATABASE, and does not get the worker stopped on the way.
	$node->safe_psql('postgres', 'CREATE ROLE pcw_stranger LOGIN CREATEDB');
	my ($sret, $sout, $serr) = $node->psql('postgres',
		'DROP DATABASE pcw_gone', extra_params => [ '-U', 'pcw_stranger' ]);
	my ($rret, $rout, $rerr) = $node->psql('postgres',
		'ALTER DATABASE pcw_gone RENAME TO pcw_stolen', extra_params => [ '-U', 'pcw_stranger' ]);
	like("$serr\n$rerr", qr/must be owner of database pcw_gone.*\n.*must be owner of database pcw_gone/s,
		'a role that does not own the database is refused');
	is(worker_pid('pcw_gone'), $gone_pid, 'and the worker there was not stopped for it');
	my $offset = log_size($node);
	my $start = time;
	my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE pcw_gone');
	my $ms = int(1000 * (time - $start));
	ok($ret == 0 && $err eq '', "DROP DATABASE succeeds while a worker runs there, in $ms ms")
	  or diag("exit code $ret, stderr: $err");
	# Cluster.pm's log_line_prefix has the pid: "[pid]".
	my @terminated = grep { /\[$gone_pid\].*terminating background worker/ }
	  split /\n/, log_since($node, $offset);
	ok(!@terminated && $ms < 10_000, 'the worker left when asked, without being terminated')
	  or diag(join("\n", @terminated, "$ms ms"));
}

fresh_db($node, 'pcw_c');
call('pcw_c');
if (expect('a worker in pcw_c', 'postgres', has_worker('pcw_c')))
{
	my ($ret1, $out1, $err1) = $node->psql('postgres', 'CREATE DATABASE pcw_c2 TEMPLATE pcw_c');
	my ($ret2, $out2, $err2) = $node->psql('postgres', 'ALTER DATABASE pcw_c RENAME TO pcw_renamed');
	ok($ret1 == 0 && $ret2 == 0,
		'CREATE DATABASE ... TEMPLATE and ALTER DATABASE RENAME succeed while a worker runs')
	  or diag("CREATE DATABASE: $ret1 $err1\nALTER DATABASE: $ret2 $err2");
}
expect('the worker comes back under the new name', 'postgres', has_worker('pcw_renamed'));

# ---- worker_databases, restart ----

fresh_db($node, 'pcw_b');
set_config('provider_connections.worker_databases', 'pcw_b');
expect('worker_databases = pcw_b: the worker of pcw_a leaves', 'postgres', no_worker('pcw_a'));
call('pcw_b');
expect('and pcw_b has one', 'postgres', has_worker('pcw_b'));
call('pcw_a');
sql_ok($node, 'pcw_a', 'without a worker the feed still assigns: provider_events_since sees every event',
	'SELECT count(*) = (SELECT count(*) FROM provider_audit_log) FROM provider_events_since(0, 100000)');
set_config('provider_connections.worker_databases', '');
expect('worker_databases emptied: pcw_a is served again', 'postgres', has_worker('pcw_a'));

$pid = worker_pid('pcw_a');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
expect('a terminated worker is restarted', 'postgres',
	"SELECT count(*) = 1 FROM (" . workers_sql('pcw_a') . ") w WHERE pid <> $pid");

# ---- notify = worker ----

set_config('provider_connections.notify', 'worker');
my $head = feed_head('pcw_a');
my $l = listen_start('pcw_a');
my @callers;
for my $i (1 .. 4)
{
	my ($out, $err) = ('', '');
	my $sql = join '', map {
		"SELECT ok FROM provider_connect('77777777-0000-0000-0000-000000000001',
		   'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\\x01');\n"
	} 1 .. 10;
	push @callers, [ IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('pcw_a') ],
		'<', \$sql, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default)), \$err ];
}
my @failed;
for my $c (@callers)
{
	my ($h, $err) = @$c;
	push @failed, $$err unless eval { $h->finish };
}
ok(!@failed, '4 concurrent callers made 10 calls each') or diag(join("\n", @failed));
my $n = expect_received(
	'a listener receives each event of 4 concurrent callers once, in feed order, with its global_position',
	$l, $head);
is($n, 80, '80 events, 80 notifications');
$l->{psql}->quit;

# A round that fails while it notifies: an injected error in the first
# INSERT of positions that has rows.
$node->safe_psql('pcw_a', <<'SQL');
CREATE SEQUENCE public.pcw_failures;
CREATE FUNCTION public.pcw_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM new_rows) THEN
		IF nextval('public.pcw_failures') = 1 THEN
			RAISE EXCEPTION 'injected failure';
		END IF;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER pcw_fail_once AFTER INSERT ON provider_event_positions
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.pcw_fail_once();
SQL
my $log_offset = log_size($node);
$head = feed_head('pcw_a');
$l = listen_start('pcw_a');
call('pcw_a');
expect('after a failed notifying round the events still get positions', 'pcw_a', $all_positioned);
expect_received('and their notifications follow, once each, in order', $l, $head);
$l->{psql}->quit;
$node->safe_psql('pcw_a', 'DROP TRIGGER pcw_fail_once ON provider_event_positions');
ok(wait_for_log_match($node, qr/could not send notifications: injected failure/, $log_offset)
	  && wait_for_log_match($node, qr/could send notifications again/, $log_offset),
	'the server log has the failure (WARNING) and the recovery')
  or diag(log_since($node, $log_offset));

# ---- SIGKILL of the worker in the middle of a round ----

call('pcw_a');
expect('positions before the kill', 'pcw_a', $all_positioned);
my $before = $node->safe_psql('pcw_a', 'SELECT max(id) FROM provider_audit_log');
# Hold the worker inside its round: it has locked the feed and waits to
# insert positions.
my $locker = do
{
	local $ENV{PGAPPNAME} = 'pcw_locker';
	$node->background_psql('pcw_a', on_error_stop => 0);
};
$locker->query_safe('BEGIN');
$locker->query_safe('LOCK TABLE provider_event_positions IN EXCLUSIVE MODE');
call('pcw_a') for 1 .. 5;
$log_offset = log_size($node);
if (expect('the worker waits inside its round', 'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = 'pcw_a'
		    AND backend_type = '$worker_type' AND wait_event_type = 'Lock'"))
{
	$pid = worker_pid('pcw_a');
	ok(kill('KILL', $pid), "killed worker $pid while its round waited to insert positions");
	# The crash restart ends the locker's session too.
	eval { $locker->quit; };
	expect('the server recovers', 'postgres', 'SELECT true');
	expect('the worker is back after the restart', 'postgres', has_worker('pcw_a'));
	expect('every event committed before the kill gets a position', 'pcw_a', $all_positioned);
	sql_ok($node, 'pcw_a', 'the 5 calls made before the kill left their 10 events',
		"SELECT count(*) = 10 FROM provider_audit_log WHERE id > $before");
	sql_ok($node, 'pcw_a', 'every audit row has exactly one position, every position one event',
		'SELECT count(*) = (SELECT count(*) FROM provider_audit_log)
		    AND count(DISTINCT audit_id) = count(*) AND count(DISTINCT global_position) = count(*)
		   FROM provider_event_positions');
	sql_ok($node, 'pcw_a', 'no position without its audit row',
		'SELECT NOT EXISTS (SELECT 1 FROM provider_event_positions p
		                     LEFT JOIN provider_audit_log a ON a.id = p.audit_id WHERE a.id IS NULL)');
	ok(log_since($node, $log_offset) =~ /provider_connections worker.*terminated by signal 9/,
		'the server log records the kill') or diag(log_since($node, $log_offset));

	$head = feed_head('pcw_a');
	$l = listen_start('pcw_a');
	call('pcw_a') for 1 .. 3;
	expect_received('notifications resume after the restart, once each, in feed order', $l, $head);
	$l->{psql}->quit;
}
else
{
	$locker->quit;
}

# ---- events a reader numbered while no worker ran ----

# With the launcher stopped no worker can start: callers leave their
# notifications to the worker all the same (worker mode), and a reader
# numbers their events itself. The worker that starts afterwards, with no
# memory of its own, goes on from where the feed's state row says
# notifications stand, and sends them, once each.
set_config('provider_connections.notify', 'worker');
our $stopped_launcher = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'provider_connections launcher'");
END { kill('CONT', $stopped_launcher) if $stopped_launcher; }
ok(kill('STOP', $stopped_launcher), "launcher $stopped_launcher stopped");
fresh_db($node, 'pcw_late');
call('pcw_late') for 1 .. 3;
$node->safe_psql('pcw_late', 'SELECT count(*) FROM provider_events_since(0, 0)');
sql_ok($node, 'pcw_late', 'a reader numbered the 6 events, no worker running',
	"SELECT (SELECT count(*) FROM provider_event_positions) = 6
	    AND NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = '$worker_type' AND datname = 'pcw_late')");
{
	my $l = listen_start('pcw_late');
	kill('CONT', $stopped_launcher);
	expect('a worker comes to pcw_late once the launcher runs again', 'postgres', has_worker('pcw_late'));
	expect_received('the worker notifies the events a reader numbered before it started, once each, in feed order',
		$l, 0);
	$l->{psql}->quit;
}

$node->stop;
done_testing();
