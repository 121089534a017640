# t/006_valgrind.pl: the pg_regress suite against a server running under
# valgrind memcheck. PostgreSQL from Debian is not built for valgrind, so the
# server itself reports known noise (e.g. uninitialised padding written to
# WAL); this fails on any error whose stack passes through our library:
# invalid reads or writes, uses of uninitialised values, bad frees.
# scripts/common.sh's install_deps installs valgrind.
#
# Copyright (c) 2026, provider_connections developers.
# Released under the PostgreSQL License (see LICENSE).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;

use File::Basename qw(dirname);
use IPC::Run;
use PCTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $top = "$FindBin::RealBin/..";
my ($valgrind) = grep { -x $_ } map { "$_/valgrind" } split /:/, $ENV{PATH};
if (!defined $valgrind)
{
	fail('valgrind is installed (scripts/common.sh install_deps installs it)');
	done_testing();
	exit;
}

# wal_level = logical and walsenders: sql/subscriber.sql subscribes one
# database of the cluster to another.
my $node = pc_node('valgrind', conf => "max_connections = 20\nwal_level = logical\nmax_wal_senders = 4\nmax_replication_slots = 4",
	start => 0);
my $bindir = `pg_config --bindir`;
chomp $bindir;
my $vgdir = PostgreSQL::Test::Utils::tempdir;

# pg_ctl starts "postgres" through this wrapper: the postmaster and every
# backend it forks run under valgrind, each writing its own report file.
my $wrapper = "$vgdir/postgres-under-valgrind";
append_to_file($wrapper, <<SH);
#!/bin/sh
exec '$valgrind' --quiet --error-limit=no --num-callers=40 --track-origins=no \\
	--log-file='$vgdir/vg.%p.log' '$bindir/postgres' "\$@"
SH
chmod(0755, $wrapper) or die "chmod $wrapper: $!";

my $running = 0;
END
{
	# Whatever happened, do not leave a server under valgrind behind.
	system('pg_ctl', '-D', $node->data_dir, '-m', 'immediate', '-w', 'stop')
	  if $running;
}

my $start_ok = PostgreSQL::Test::Utils::system_log('pg_ctl', '-w', '-t', '300',
	'-D', $node->data_dir, '-l', $node->logfile, '-p', $wrapper, 'start') == 0;
$running = 1;
ok($start_ok, 'the server starts under valgrind')
  or BAIL_OUT("the server did not start under valgrind:\n" . slurp_file($node->logfile));

# The suite's files as make sees them (REGRESS may be a wildcard).
my ($regress, $make_err) = ('', '');
IPC::Run::run([ 'make', '-s', '--no-print-directory', '-C', $top, '-f', 'Makefile', '-f', '-',
		'pc_print_regress' ],
	'<', \"pc_print_regress: ; \@echo \$(REGRESS)\n", '>', \$regress, '2>', \$make_err);
chomp $regress;
my @tests = split ' ', $regress;
ok(@tests > 0, 'the Makefile names the regression tests') or diag("make said: $make_err");

my $pg_regress = $ENV{PG_REGRESS}
  // dirname(`pg_config --pgxs`) . '/../test/regress/pg_regress';
my $out = PostgreSQL::Test::Utils::tempdir;
my $started = time;
my $suite_ok = PostgreSQL::Test::Utils::system_log($pg_regress,
	"--inputdir=$top", "--outputdir=$out", "--bindir=$bindir",
	'--host=' . $node->host, '--port=' . $node->port,
	'--load-extension=pgcrypto', '--dbname=contrib_regression', @tests) == 0;
ok($suite_ok, 'the regression suite passes under valgrind in ' . (time - $started) . ' s')
  or diag((-e "$out/regression.diffs" ? slurp_file("$out/regression.diffs") : '(no diffs)'));

PostgreSQL::Test::Utils::system_log('pg_ctl', '-D', $node->data_dir, '-m', 'fast', '-w',
	'-t', '120', 'stop');
$running = 0;

# Each valgrind report is a block ending in a blank "==pid== " line. A frame
# is ours if it names our library or, with debug info, one of our sources.
opendir(my $src, "$top/src") or die "$top/src: $!";
my @sources = map { s/\.c$//r } grep { /\.c$/ } readdir($src);
closedir($src);
my $ours_re = qr/provider_connections\.so|\((?:${\ join('|', map { quotemeta } @sources)})\.c:\d+\)/;

# What PostgreSQL's own src/tools/valgrind.supp suppresses as harmless
# padding (padding_XLogRecData_write, padding_relcache): uninitialised bytes
# that a write of WAL or of the relcache init file hands to the kernel. The
# background worker commits and connects, so such writes happen with our
# code lower on the stack. Debian's postgres has no symbols for the static
# functions the suppressions name (XLogWrite, write_relcache_init_file), so
# they are recognised by their nearest exported callers: XLogInsertRecord
# too, which writes WAL out when the buffers are full (a CREATE DATABASE
# WAL-logging the pages it copies does, under our utility hooks).
my $padding_re = qr/\A[^\n]*Syscall param (?:write|pwrite64|pwritev)\(buf\) points to uninitialised byte/;
my $padding_callers_re = qr/\b(?:XLogWrite|XLogFlush|XLogBackgroundFlush|XLogInsertRecord|write_relcache_init_file|RelationCacheInitializePhase3)\b/;

# ours_in(TEXT): the reports in TEXT that pass through our code, less
# PostgreSQL's known padding writes (counted in $padding_through_ours).
my $padding_through_ours = 0;
sub ours_in
{
	my ($text) = @_;
	my @ours;
	my $block = '';
	my $take = sub {
		return unless $block =~ $ours_re;
		# The stack of the error itself: up to the "Address ..." part.
		my ($stack) = split /^==\d+==  (?:Address|Uninitialised value was created)/m, $block;
		if ($block =~ $padding_re && $stack =~ $padding_callers_re)
		{
			$padding_through_ours++;
			return;
		}
		push @ours, $block;
	};
	for my $line (split /\n/, $text)
	{
		if ($line =~ /^==\d+== $/)
		{
			$take->();
			$block = '';
			next;
		}
		$block .= "$line\n";
	}
	$take->();
	return @ours;
}

# The detector itself must see a report in our code, and tell PostgreSQL's
# padding writes from it.
ok( scalar(ours_in(
		"==1== Invalid read of size 8\n==1==    at 0x1: pc_open (crypto.c:170)\n==1== \n")),
	'the report filter sees frames in our code');
ok( !scalar(ours_in(
		"==1== Syscall param pwrite64(buf) points to uninitialised byte(s)\n"
		  . "==1==    at 0x1: pwrite (pwrite64.c:25)\n==1==    by 0x2: XLogFlush (in postgres)\n"
		  . "==1==    by 0x3: WorkerRound (worker.c:921)\n==1==  Address 0x4 is in a rw- anonymous segment\n==1== \n"
	  ))
	  && scalar(ours_in(
		"==1== Syscall param pwrite64(buf) points to uninitialised byte(s)\n"
		  . "==1==    at 0x1: pwrite (pwrite64.c:25)\n==1==    by 0x3: pc_seal (crypto.c:99)\n==1== \n"
	  )),
	'the report filter leaves out only PostgreSQL\'s own padding writes');
$padding_through_ours = 0;

my @logs = glob("$vgdir/vg.*.log");
ok(@logs > 1, 'valgrind wrote a report file for the postmaster and its backends ('
	  . scalar(@logs) . ')');
my $all = join('', map { slurp_file($_) } @logs);
my $total = () = $all =~ /^==\d+== [A-Z]/mg;
my @ours = ours_in($all);
note("$padding_through_ours padding writes of WAL or the relcache init file below our code, as PostgreSQL's valgrind.supp suppresses");
is(scalar(@ours), 0,
	"no valgrind error in provider_connections ($total report lines elsewhere in the server)")
  or diag("valgrind errors in provider_connections:\n"
	  . join("\n", (split /\n/, join("\n", @ours))[ 0 .. 79 ]));

done_testing();
