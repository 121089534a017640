# bench/report.awk: turns the results bench/run.sh collects (results.tsv,
# one line per pgbench run) into the markdown tables of bench/README.md:
# throughput and ratios per group, every run's listener figures, and the
# targets of issue 6 with the figure measured beside each.
#
# Input columns: round workload clients sync target tps expected received
# missed duplicated unexpected failed p50_ms p99_ms pgbench_rc checkpoints
# (how many checkpoints started during the run) commit_p50_ms commit_p99_ms
# (latency from the commit, "-" without commit timestamps) worker_cpu_pct
# (the worker's CPU during the run, % of one core; "-" but in worker mode)
# wal_syncs_per_s wal_sync_ms (WAL flushes during the run, and the mean
# time of one) worker_rounds (the worker's rounds that numbered the run's
# events; "-" but in worker mode).
# With several rounds, tps, p50 and worker CPU are medians, p99 the largest,
# counts sums.
# Plain POSIX awk (Debian's mawk): no asort.

BEGIN { FS = "\t" }

NR == 1 { next }

{
	g = $2 SUBSEP $3 SUBSEP $4
	if (!(g in group_seen)) { group_seen[g] = 1; groups[++ngroups] = g }
	k = g SUBSEP $5
	n = ++runs[k]
	tps[k, n] = $6
	tps_round[k, $1] = $6
	if ($1 + 0 > max_round) max_round = $1 + 0
	p50[k, n] = $13
	if (!(k in p99) || $14 + 0 > p99[k] + 0) p99[k] = $14
	if ($17 != "" && $17 != "-") {
		cp50[k, ++ncommit[k]] = $17
		if (!(k in cp99) || $18 + 0 > cp99[k] + 0) cp99[k] = $18
	}
	if ($19 != "" && $19 != "-") wcpu[k, ++nwcpu[k]] = $19
	if ($22 != "" && $22 != "-" && $7 + 0 > 0) epr[k, ++nepr[k]] = $7 / ($22 > 0 ? $22 : 1)
	if ($21 != "" && $21 != "-") { wsps[k, ++nws[k]] = $20; wsms[k, nws[k]] = $21 }
	if ($23 != "" && $23 != "-") wbytes[k, ++nwb[k]] = $23
	expected[k] += $7; received[k] += $8; missed[k] += $9
	duplicated[k] += $10; unexpected[k] += $11; failed[k] += $12
	if ($7 == "-") nolistener[k] = 1
	if ($15 != 0) bad[k] = 1
	if ($16 + 0 > 0) { checkpointed[k] += $16; any_checkpoint++ }
}

# Median of values[k, 1..count] (sorted in place: insertion sort).
function median(values, k, count,    i, j, v) {
	for (i = 2; i <= count; i++) {
		v = values[k, i]
		for (j = i - 1; j >= 1 && values[k, j] + 0 > v + 0; j--) values[k, j + 1] = values[k, j]
		values[k, j + 1] = v
	}
	if (count % 2) return values[k, (count + 1) / 2]
	return (values[k, count / 2] + values[k, count / 2 + 1]) / 2
}

# Median over the rounds of the per-round ratio tps(g, a) / tps(h, b): each
# round's runs follow each other, so drift cancels within a round.
function round_ratio(g, a, h, b,    n, r, vals, ka, kb) {
	ka = g SUBSEP a; kb = h SUBSEP b
	n = 0
	for (r = 1; r <= max_round; r++)
		if (((ka, r) in tps_round) && ((kb, r) in tps_round) && tps_round[kb, r] + 0 > 0)
			vals["x", ++n] = tps_round[ka, r] / tps_round[kb, r]
	if (n == 0) return ""
	return sprintf("%.2f", median(vals, "x", n))
}
# The same ratio's smallest and largest round, "min-max" ("" with one round).
function round_spread(g, a, h, b,    r, lo, hi, v, ka, kb, n) {
	ka = g SUBSEP a; kb = h SUBSEP b
	for (r = 1; r <= max_round; r++)
		if (((ka, r) in tps_round) && ((kb, r) in tps_round) && tps_round[kb, r] + 0 > 0) {
			v = tps_round[ka, r] / tps_round[kb, r]
			if (!n++ || v < lo) lo = v
			if (n == 1 || v > hi) hi = v
		}
	return n > 1 ? sprintf("rounds %.2f-%.2f", lo, hi) : ""
}

function spread_value(g, a, h, b,    v, sp) {
	v = round_ratio(g, a, h, b)
	sp = round_spread(g, a, h, b)
	return (v == "" || sp == "") ? v : v " (" sp ")"
}

function has(g, t) { return ((g SUBSEP t) in runs) }
function tps_of(g, t) { return has(g, t) ? median(tps, g SUBSEP t, runs[g SUBSEP t]) : "" }
# 12345.6 -> "12,346"
function fmt(x,    s) {
	if (x == "") return ""
	s = sprintf("%d", x + 0.5)
	while (s ~ /[0-9][0-9][0-9][0-9]/) s = gensep(s)
	return s
}
function gensep(s,    i) {
	# insert one comma before the last group of three digits not yet separated
	i = match(s, /[0-9][0-9][0-9][0-9]+/)
	return substr(s, 1, RSTART + RLENGTH - 4) "," substr(s, RSTART + RLENGTH - 3)
}
function num(x) { return x == "" ? "" : sprintf("%.0f", x) }
function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "" : sprintf("%.2f", a / b) }
function workload_name(w) {
	if (w == "reconnect") return "disconnect + reconnect"
	if (w == "mix") return "mix 80/15/5"
	return w
}
function events(g, t,    k) {
	k = g SUBSEP t
	if (!has(g, t) || nolistener[k]) return ""
	return missed[k] " / " duplicated[k]
}
function latency(g, t,    k) {
	k = g SUBSEP t
	if (!has(g, t) || nolistener[k] || received[k] == 0) return ""
	return sprintf("%.1f / %.1f", median(p50, k, runs[k]), p99[k]) \
		(ncommit[k] ? sprintf(" (commit: %.1f / %.1f)", median(cp50, k, ncommit[k]), cp99[k]) : "")
}
# WAL flushes per second and ms per flush, medians of the runs.
function wal_syncs(g, t,    k) {
	k = g SUBSEP t
	return nws[k] ? sprintf("%.0f | %.2f", median(wsps, k, nws[k]), median(wsms, k, nws[k])) : " | "
}
# The worker's CPU share, median of the runs, and events per round ("" outside worker mode).
function worker_cpu(g, t,    k) {
	k = g SUBSEP t
	return (nwcpu[k] ? sprintf("%.1f", median(wcpu, k, nwcpu[k])) : "") " | " \
		(nepr[k] ? sprintf("%.1f", median(epr, k, nepr[k])) : "")
}
# WAL bytes per pgbench transaction, median of the runs of target k.
function wal_bytes(k) {
	return nwb[k] ? sprintf("%.0f", median(wbytes, k, nwb[k])) : ""
}
function split_group(g, parts) { return split(g, parts, SUBSEP) }

# One target line: what, the requirement, the measured value ("" when not
# measured), the threshold and comparison, and why the value does not count
# (e.g. the target's events were not delivered), if it does not.
function target_row(what, need, value, threshold, cmp, invalid,    met) {
	if (value == "" && invalid == "") { printf "| %s | %s | not measured | |\n", what, need; return }
	if (invalid != "") {
		printf "| %s | %s | %s | **no** |\n", what, need, value == "" ? invalid : value " (" invalid ")"
		return
	}
	if (cmp == ">=") met = (value + 0 >= threshold + 0)
	else if (cmp == "<") met = (value + 0 < threshold + 0)
	else if (cmp == "<=") met = (value + 0 <= threshold + 0)
	else met = (value + 0 == threshold + 0)
	printf "| %s | %s | %s | %s |\n", what, need, value, met ? "yes" : "**no**"
}

# Why a run's throughput does not count for a target: events not delivered.
function undelivered(g, t,    k) {
	k = g SUBSEP t
	if (!has(g, t) || nolistener[k]) return ""
	if (missed[k] + duplicated[k] + unexpected[k] > 0) return "events not delivered: " missed[k] " missed, " duplicated[k] " duplicated"
	return ""
}

END {
	print "### Throughput"
	print ""
	print "tps per target, and the extension's throughput divided by each"
	print "competitor's in the same group (runs of one group follow each other)."
	print "Events: missed / duplicated, from the listener; latency: median / p99 in ms"
	print "from the write of the audit row to the listener (an upper bound on"
	print "commit-to-listener), and in parentheses from the commit timestamp of the"
	print "row's transaction (taken as its COMMIT starts, before the caller's flush)."
	if (any_checkpoint)
		print "A checkpoint started during " any_checkpoint " run(s), marked in the last table: their figures are less reliable."
	for (k in missed)
		if (k ~ /ext/ && missed[k] + duplicated[k] > 0) undelivered_rows++
	if (undelivered_rows)
		print "**" undelivered_rows " extension row(s) did not deliver every event** (missed / dup below): their throughput is not that of a working implementation."
	print ""
	print "| workload | clients | sync commit | notify | extension | PL/pgSQL | ext / PL/pgSQL | floor | ext / floor | floor w/o NOTIFY | ext / floor w/o NOTIFY | ext events missed / dup | ext latency ms | PL/pgSQL latency ms |"
	print "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= ngroups; i++) {
		g = groups[i]
		split_group(g, p)
		pl = tps_of(g, "plref"); fl = tps_of(g, "floor"); fn = tps_of(g, "floor-nonotify")
		for (m = 1; m <= 2; m++) {
			t = (m == 1) ? "ext" : "ext-worker"
			if (!has(g, t)) continue
			e = tps_of(g, t)
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				workload_name(p[1]), p[2], p[3], (m == 1) ? "commit" : "worker",
				fmt(e), fmt(pl), ratio(e, pl), fmt(fl), ratio(e, fl), fmt(fn), ratio(e, fn),
				events(g, t), latency(g, t), latency(g, "plref")
		}
	}
	print ""

	print "### Targets (issue 18)"
	print ""
	print "Ratios are medians over the rounds of each round's ratio (the runs of a"
	print "round follow each other). A throughput figure counts only if the"
	print "extension delivered every event of its runs. The mix floor is the fair"
	print "one: the same 80/15/5 mix as raw statements without NOTIFY"
	print "(floor_refresh.sql, floor_connect_nonotify.sql, floor_reconnect.sql)."
	print ""
	print "| # | target | required | measured | met |"
	print "|---|---|---|---:|---|"
	split("connect refresh mix", ws, " ")
	for (i = 1; i <= 3; i++) {
		g = ws[i] SUBSEP 1 SUBSEP "off"
		target_row("0 | " workload_name(ws[i]) ", 1 client, async, commit mode: ext / PL/pgSQL", ">= 1.3",
			spread_value(g, "ext", g, "plref"), 1.3, ">=", undelivered(g, "ext"))
	}
	if (catchup != "") {
		while ((getline line < catchup) > 0) {
			nf = split(line, kvs, " ")
			for (j = 1; j <= nf; j++) { split(kvs[j], kv, "="); cu[kv[1]] = kv[2] }
		}
		target_row("1 | catch-up: " fmt(cu["backlog"]) " events in pages of " cu["page"] ", provider_events_since / raw keyset read (speed; median of " cu["passes"] " passes, " sprintf("%.2f-%.2f", cu["ratio_min"], cu["ratio_max"]) ")",
			">= 0.9", sprintf("%.2f", cu["ratio_median"]), 0.9, ">=", "")
		target_row("1 | at the head: provider_events_since after a commit, median ms of " cu["calls"] " calls (p99 " cu["p99_ms"] ", max " cu["max_ms"] "; calls missing an event: " cu["wrong"] ")",
			"<= 1", cu["p50_ms"], 1, "<=", cu["wrong"] + 0 > 0 ? cu["wrong"] " calls missed an event" : "")
	} else {
		target_row("1 | catch-up (bench/catchup.sh)", ">= 0.9", "", 0.9, ">=", "")
		target_row("1 | at the head (bench/catchup.sh)", "<= 1 ms", "", 1, "<=", "")
	}
	split("8 16", cs, " ")
	for (j = 1; j <= 2; j++) {
		g = "connect" SUBSEP cs[j] SUBSEP "on"
		target_row("2 | connect, " cs[j] " clients, durable, worker mode: ext / floor w/o NOTIFY", ">= 0.85",
			spread_value(g, "ext-worker", g, "floor-nonotify"), 0.85, ">=", undelivered(g, "ext-worker"))
		g = "mix" SUBSEP cs[j] SUBSEP "on"
		target_row("2 | mix 80/15/5, " cs[j] " clients, durable, worker mode: ext / fair mix floor w/o NOTIFY", ">= 0.8",
			spread_value(g, "ext-worker", g, "floor-nonotify"), 0.8, ">=", undelivered(g, "ext-worker"))
	}
	split("connect mix", ws, " ")
	for (i = 1; i <= 2; i++) {
		g = ws[i] SUBSEP 16 SUBSEP "on"
		k = g SUBSEP "ext-worker"
		target_row("3 | " workload_name(ws[i]) ", 16 clients, durable, worker mode: p99 " (ncommit[k] ? "commit" : "write") "-to-listener ms (largest of the rounds" (ncommit[k] ? "; from the write: " p99[k] : "") "; every event delivered: " ((has(g, "ext-worker") && !nolistener[k]) ? missed[k] + duplicated[k] == 0 ? "yes" : "no" : "?") ")", "<= 10",
			(has(g, "ext-worker") && !nolistener[k] && received[k] > 0) ? (ncommit[k] ? cp99[k] : p99[k]) : "", 10, "<=", undelivered(g, "ext-worker"))
	}
	# bench/scale.sh's targets (bench/all.sh with ALL_SCALE=1): what,
	# required, measured, ok / MISSED / empty for a figure only reported.
	nscale = 0
	if (scale != "")
		while ((getline line < scale) > 0) {
			split(line, sc, "\t")
			verdict = sc[4] == "ok" ? "yes" : sc[4] == "MISSED" ? "**no**" : ""
			print "| 4 | scale (bench/scale.sh): " sc[1] " | " sc[2] " | " sc[3] " | " verdict " |"
			nscale++
		}
	if (nscale == 0)
		print "| 4 | scale: 1,000,000 connections / 10,000,000 audit rows | (bench/scale.sh) | not part of this run | |"
	print ""

	print "### Targets (issue 6)"
	print ""
	print "Only what this harness measures; scale and memory targets are not."
	print "The floor runs the connect workload only: the mix is compared with the"
	print "floor's connect figure of the same clients and setting. A throughput figure"
	print "counts only if the extension delivered every event of that run."
	print ""
	print "| target | required | measured | met |"
	print "|---|---|---:|---|"
	split("connect refresh reconnect", ws, " ")
	for (i = 1; i <= 3; i++) {
		g = ws[i] SUBSEP 1 SUBSEP "off"
		target_row(workload_name(ws[i]) ", 1 client, async, commit mode: ext / PL/pgSQL", ">= 1.1",
			ratio(tps_of(g, "ext"), tps_of(g, "plref")), 1.1, ">=", undelivered(g, "ext"))
		if (ws[i] == "connect")
			target_row(workload_name(ws[i]) ", 1 client, async, commit mode: ext / floor", ">= 0.9",
				ratio(tps_of(g, "ext"), tps_of(g, "floor")), 0.9, ">=", undelivered(g, "ext"))
	}
	split("8 16", cs, " ")
	split("connect mix", ws, " ")
	for (j = 1; j <= 2; j++)
		for (i = 1; i <= 2; i++) {
			g = ws[i] SUBSEP cs[j] SUBSEP "on"
			fg = "connect" SUBSEP cs[j] SUBSEP "on"
			what = workload_name(ws[i]) ", " cs[j] " clients, durable, worker mode"
			k = g SUBSEP "ext-worker"
			bad_events = undelivered(g, "ext-worker")
			target_row(what ": ext / PL/pgSQL", ">= 2.0", ratio(tps_of(g, "ext-worker"), tps_of(g, "plref")), 2.0, ">=", bad_events)
			target_row(what ": ext / floor w/o NOTIFY", ">= 0.8",
				ratio(tps_of(g, "ext-worker"), tps_of(fg, "floor-nonotify")), 0.8, ">=", bad_events)
			target_row(what ": events missed + duplicated", "0",
				(has(g, "ext-worker") && !nolistener[k]) ? missed[k] + duplicated[k] : "", 0, "==", "")
			target_row(what ": p99 write-to-listener ms", "< 50",
				(has(g, "ext-worker") && !nolistener[k] && received[k] > 0) ? p99[k] : "", 50, "<",
				(has(g, "ext-worker") && !nolistener[k] && received[k] == 0) ? "no event received" : "")
		}
	split("connect refresh reconnect mix", ws, " ")
	for (j = 1; j <= 2; j++)
		for (i = 1; i <= 4; i++) {
			g = ws[i] SUBSEP cs[j] SUBSEP "on"
			target_row(workload_name(ws[i]) ", " cs[j] " clients, durable, commit mode: ext / PL/pgSQL", ">= 1.0",
				ratio(tps_of(g, "ext"), tps_of(g, "plref")), 1.0, ">=", undelivered(g, "ext"))
		}
	print ""

	print "<details><summary>Every target's listener figures</summary>"
	print ""
	print "| workload | clients | sync commit | target | tps | audit rows | received | missed | duplicated | unexpected | Failed outcomes | p50 ms | p99 ms | commit p50 ms | commit p99 ms | worker CPU % | events per round | WAL flushes/s | ms per WAL flush | WAL bytes per transaction | checkpoints |"
	print "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	split("ext plref floor ext-worker floor-nonotify", ts, " ")
	for (i = 1; i <= ngroups; i++) {
		g = groups[i]
		split_group(g, p)
		for (m = 1; m <= 5; m++) {
			t = ts[m]
			if (!has(g, t)) continue
			k = g SUBSEP t
			if (nolistener[k])
				printf "| %s | %s | %s | %s | %s | (no report) | | | | | | | | | | %s | %s | %s | %d |\n",
					workload_name(p[1]), p[2], p[3], t, fmt(tps_of(g, t)), worker_cpu(g, t), wal_syncs(g, t), wal_bytes(k), checkpointed[k]
			else
				printf "| %s | %s | %s | %s | %s | %d | %d | %s | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %d |\n",
					workload_name(p[1]), p[2], p[3], t, fmt(tps_of(g, t)), expected[k], received[k],
					(t == "floor-nonotify") ? "n/a" : missed[k], duplicated[k], unexpected[k], failed[k],
					received[k] ? sprintf("%.1f", median(p50, k, runs[k])) : "",
					received[k] ? sprintf("%.1f", p99[k]) : "",
					received[k] && ncommit[k] ? sprintf("%.1f", median(cp50, k, ncommit[k])) : "",
					received[k] && ncommit[k] ? sprintf("%.1f", cp99[k]) : "",
					worker_cpu(g, t), wal_syncs(g, t), wal_bytes(k), checkpointed[k]
			if (bad[k]) printf "| | | | %s: a pgbench run failed | | | | | | | | | | | | | | | | | |\n", t
		}
	}
	print ""
	print "</details>"
}
