# t/008_feed_plans.pl: a feed assignment round costs what it numbers, even
# when its kept (generic) plans were made while the tables were empty.
#
# An assigner plans its statements once and keeps them: the worker for its
# whole life, a session for its own. A plan made on an empty log once
# checked "not numbered yet" by scanning the whole audit_id index for every
# candidate, and a round of ten thousand events took seconds. Here one
# session, with no worker serving the database, plans its rounds on empty
# tables, then numbers batches of events, and the index entries those
# rounds read (counted within the transaction)
# must stay within a small multiple of what they number, and no round may
# scan a table whole.
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

# The library is preloaded (as the README asks) but no worker serves the
# database, so provider_events_since runs the rounds in this session.
my $node = pc_node('plans', conf => "provider_connections.worker_databases = 'postgres'");
fresh_db($node, 'plans');

# What this backend has read so far of our tables and their indexes: scans
# and entries per relation. The counters only grow inside a transaction
# block (they are flushed between transactions), so a round's cost is the
# difference of two readings around it in one transaction.
my $reads = q{
SELECT 'reads', string_agg(format('%s:%s:%s', c.relname, pg_stat_get_xact_numscans(c.oid),
                                  pg_stat_get_xact_tuples_returned(c.oid)), ' ' ORDER BY c.relname)
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace
   AND c.relname LIKE ANY (ARRAY['provider_audit_log%', 'provider_event_positions%'])
   AND c.relkind IN ('r', 'i');
};

my $connects = sub {
	my ($first, $n) = @_;
	return qq{
SELECT count(*) FILTER (WHERE (provider_connect(('e0000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid,
                        'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'schwab', '\\x01')).ok)
  FROM generate_series($first, $first + $n - 1) g;
};
};

# One psql session for everything, so that its kept plans are the ones made
# first: the first round on empty tables, then a regular round planned
# after an ANALYZE saw 1,000 events and no positions yet (as after a bulk
# load, or when autovacuum analyzes the log before any round ran). That is
# where an anti join once chose to scan the whole audit_id index per row.
my $out = $node->safe_psql('plans', join("\n",
	'SELECT count(*) FROM provider_events_since(0, 0);',
	$connects->(1, 500),
	'ANALYZE provider_audit_log, provider_event_positions;',
	'SELECT count(*) FROM provider_events_since(0, 0);',
	# Then three measured rounds of 1,000 events each.
	(map {
		($connects->(1000 * $_, 500),
		 'BEGIN;',
		 $reads,
		 'SELECT count(*) FROM provider_events_since(0, 0);',
		 $reads,
		 "SELECT 'numbered', count(*) FROM provider_event_positions;",
		 'COMMIT;')
	} 1 .. 3)));
note $out;

# parse(LINE): relation => [scans, entries]
sub parse
{
	my ($line) = @_;
	$line =~ s/^reads\|//;
	return { map { my ($rel, $scans, $entries) = split /:/; ($rel => [ $scans, $entries ]) }
		  split / /, $line };
}

my @lines = split /\n/, $out;
my @rounds;
for (my $i = 0; $i < @lines; $i++)
{
	next unless $lines[$i] =~ /^numbered\|(\d+)$/;
	# Above it: the reading after the round, its count, the reading before.
	push @rounds,
	  { total => $1, before => parse($lines[$i - 3]), after => parse($lines[$i - 1]) };
}
is(scalar @rounds, 3, 'three measured rounds ran');

my $previous = 1000;
for my $r (@rounds)
{
	my $numbered = $r->{total} - $previous;
	$previous = $r->{total};
	is($numbered, 1000, "a round numbers the 1,000 events committed before it (total $r->{total})");
	my %delta;
	for my $rel (keys %{ $r->{after} })
	{
		$delta{$rel} = [ map { $r->{after}{$rel}[$_] - $r->{before}{$rel}[$_] } 0, 1 ];
	}
	my $detail = join ' ', map { "$_=$delta{$_}[0] scans/$delta{$_}[1] entries" }
	  grep { $delta{$_}[0] || $delta{$_}[1] } sort keys %delta;
	my $entries = 0;
	$entries += $_->[1] for values %delta;
	# Each candidate: its xid index entry, then one (audit_id, user_id)
	# probe of provider_event_positions_pkey that finds nothing (not
	# numbered yet); the page read finds none (0 asked). is(), not
	# cmp_ok('=='): a renamed index would read as undef, which must fail.
	cmp_ok($entries, '<=', 2 * $numbered, "the round read $entries entries for $numbered events: $detail");
	is($delta{provider_event_positions_pkey}[1], 0,
		'the "not numbered yet" probes found nothing to skip');
	is($delta{provider_audit_log}[0] + $delta{provider_event_positions}[0], 0,
		'neither table was scanned whole');
}

done_testing();
