#!/usr/bin/python3
"""examples/refresh_worker.py: a token refresh worker for provider_connections.

It refreshes credentials before they expire (README.md, "Refresh workers"):

  - It claims connections expiring within --within seconds with
    provider_claim_expiring: each comes leased to this worker for --lease
    seconds, with a fencing token (lease_token). Several workers may run
    at once: they never get the same connection while a lease runs.
  - For each, it opens the credentials (provider_credentials) and calls the
    provider (the --provider module, below) in a thread. Every third of the
    lease it renews (provider_renew_lease) the leases of the connections of
    the batch it has not finished, so a slow provider does not lose them.
    A connection whose lease a renewal finds gone (the worker stalled and
    another claimed it) is dropped from the batch, and a call in progress
    for it may still return: storing its outcome then fails (lease_lost)
    without changing anything.
  - Then, always with the token: new credentials go to
    provider_refresh_tokens; a provider that refused the refresh token
    (invalid_grant) goes to provider_mark_revoked; any other failure goes
    to provider_record_refresh_failure, which counts it and holds the
    connection back (exponential backoff, or the provider's retry_after)
    until the next attempt, and after provider_connections.
    max_refresh_attempts failures in a row stops it being claimed (the
    event asks the user to connect again).
  - SIGTERM or SIGINT: it finishes the provider call in progress and
    stores its outcome, gives back the leases of the connections of the
    batch it has not reached (provider_release_lease), and exits 0. Any
    database error stops it with exit status 1 and a message on stderr;
    run it under a supervisor that restarts it. A worker that dies (even
    SIGKILL) holds its connections only until their leases run out.

The provider is a Python module (--provider: a module name on PYTHONPATH,
or the path of a .py file) with one function:

    refresh(connection, credentials) -> (new_credentials: bytes,
                                         expires_at: datetime or None)

connection is the claimed row (a dict: connection_id, user_id,
provider_id, provider_slug, credential_type, credentials_expires_at,
lease_token, lease_until, refresh_attempts), credentials the plain bytes.
To report a failure it raises an exception: one with a true attribute
`revoked` when the provider refused the refresh token for good (the user
must connect again); any other for a transient failure, with an optional
attribute `retry_after` (seconds) when the provider said when to retry.
Its message becomes the failure's reason: never put credentials in it.

It prints one line per outcome to stdout, and a summary at the end:

    claimed count=12
    refreshed connection=019b... attempt=0
    failed connection=019b... attempt=2 next=2026-01-05T06:07:39.1+00:00
    exhausted connection=019b... attempt=5
    revoked connection=019b...
    lease_lost connection=019b... (stale: another worker holds it now)
    summary claims=40 refreshed=37 failed=2 exhausted=0 revoked=1 lease_lost=0 renewed=5 released=0

Run it (psycopg 3, Debian's python3-psycopg) with a libpq connection string
or URI, or none and the PG* environment variables:

    /usr/bin/python3 examples/refresh_worker.py --provider my_provider 'dbname=app user=provider_worker'

The role needs what README.md, "Security model", gives provider_worker:
EXECUTE on provider_credentials, provider_claim_expiring,
provider_refresh_tokens, provider_mark_revoked, provider_renew_lease,
provider_release_lease and provider_record_refresh_failure, and USAGE on
the extension's schema.

Copyright (c) 2026, provider_connections developers.
Released under the PostgreSQL License (see LICENSE).
"""

import argparse
import concurrent.futures
import importlib
import importlib.util
import os
import signal
import sys
import threading
import time
from datetime import timedelta

import psycopg
from psycopg.rows import dict_row

# Set by the SIGTERM / SIGINT handler, checked between connections; the
# event also cuts short the wait between two empty claims.
stopping = threading.Event()


def parse_args(argv):
    """Command line: the connection string, the provider, the loop's knobs."""
    p = argparse.ArgumentParser(description="Refresh provider credentials before they expire.")
    p.add_argument("conninfo", nargs="?", default=os.environ.get("PC_WORKER_CONNINFO", ""),
                   help="libpq connection string or URI (default: $PC_WORKER_CONNINFO, "
                        "else the PG* environment variables)")
    p.add_argument("--provider", required=True,
                   help="module (name on PYTHONPATH, or path of a .py file) whose refresh() calls the provider")
    p.add_argument("--within", type=float, default=300.0,
                   help="claim connections expiring within this many seconds (default 300)")
    p.add_argument("--lease", type=float, default=60.0,
                   help="lease, in seconds, renewed while a call runs (default 60; at most "
                        "provider_connections.max_lease)")
    p.add_argument("--batch", type=int, default=20, help="connections per claim (default 20)")
    p.add_argument("--idle", type=float, default=5.0,
                   help="seconds to wait after a claim that found nothing (default 5)")
    p.add_argument("--schema", default="public",
                   help="schema where provider_connections is installed (default public)")
    p.add_argument("--no-renew", action="store_true",
                   help="never renew a lease (to see the fence at work: a call that outlasts "
                        "its lease may then be refused with lease_lost)")
    args = p.parse_args(argv)
    if args.batch < 1 or args.lease <= 0 or args.within <= 0 or args.idle <= 0:
        p.error("--batch must be at least 1, --lease, --within and --idle positive")
    return args


def load_provider(name):
    """The provider module: a .py path, or a module name."""
    if name.endswith(".py"):
        spec = importlib.util.spec_from_file_location("refresh_provider", name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(name)
    if not callable(getattr(module, "refresh", None)):
        raise SystemExit(f"refresh_worker: provider {name} has no refresh() function")
    return module


def on_stop_signal(signum, frame):
    """SIGTERM / SIGINT: stop after the connection in progress."""
    if not stopping.is_set():
        os.write(sys.stdout.fileno(),
                 f"stopping on {signal.Signals(signum).name}: finishing the connection in progress\n"
                 .encode())
    stopping.set()


class Worker:
    """One database connection (autocommit: every call commits by itself,
    nothing stays idle in a transaction while a provider is called), the
    provider, and the counts of the summary."""

    def __init__(self, args, provider):
        self.args = args
        self.provider = provider
        params = {}
        if "PGAPPNAME" not in os.environ and "application_name" not in args.conninfo:
            params["application_name"] = "provider_connections refresh worker"
        self.conn = psycopg.connect(args.conninfo, autocommit=True, row_factory=dict_row, **params)
        self.conn.execute("SELECT pg_catalog.set_config('search_path', %s, false)",
                          [f"{args.schema}, pg_catalog"])
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.lease = timedelta(seconds=args.lease)
        self.pending = []           # claimed, not handled yet: their leases are renewed
        self.last_renewal = 0.0
        self.counts = dict.fromkeys(
            ("claims", "refreshed", "failed", "exhausted", "revoked", "lease_lost", "renewed",
             "released"), 0)

    def say(self, line):
        print(line, flush=True)

    def claim(self):
        """Lease up to --batch connections expiring within --within."""
        rows = self.conn.execute(
            "SELECT * FROM provider_claim_expiring(%s, %s, %s)",
            [timedelta(seconds=self.args.within), self.args.batch, self.lease]).fetchall()
        self.counts["claims"] += len(rows)
        if rows:
            self.say(f"claimed count={len(rows)}")
        return rows

    def renew(self, force=False):
        """Renew the leases of the batch's connections not yet handled,
        every third of the lease (or now, with force): a batch of fast
        calls must not lose its last connections to another worker.
        Connections whose lease is gone (the worker stalled and another
        claimed them) are dropped from the batch: calling their provider
        would be wasted, and storing would be refused."""
        if self.args.no_renew or not self.pending:
            return
        if not force and time.monotonic() - self.last_renewal < self.args.lease / 3:
            return
        self.last_renewal = time.monotonic()
        rows = self.conn.execute(
            "SELECT r.id, provider_renew_lease(r.id, r.token, %s) AS until"
            "  FROM unnest(%s::uuid[], %s::uuid[]) AS r(id, token)",
            [self.lease, [r["connection_id"] for r in self.pending],
             [r["lease_token"] for r in self.pending]]).fetchall()
        lost = {r["id"] for r in rows if r["until"] is None}
        self.counts["renewed"] += len(rows) - len(lost)
        for cid in lost:
            self.say(f"lease_gone connection={cid} (another worker claimed it after this one stalled)")
        self.pending = [r for r in self.pending if r["connection_id"] not in lost]

    def call_provider(self, row):
        """Run the provider call on the pool's thread, renewing the leases
        on this one while it runs; returns the call's future, done."""
        creds = self.conn.execute("SELECT provider_credentials(%s) AS c",
                                  [row["connection_id"]]).fetchone()["c"]
        future = self.pool.submit(self.provider.refresh, dict(row), bytes(creds) if creds else b"")
        while True:
            try:
                future.exception(timeout=self.args.lease / 6)
                return future
            except concurrent.futures.TimeoutError:
                self.renew()

    def store(self, row, future):
        """Record the call's outcome, fenced by the lease token."""
        cid, token = row["connection_id"], row["lease_token"]
        exc = future.exception()
        if exc is None:
            credentials, expires_at = future.result()
            r = self.conn.execute(
                "SELECT * FROM provider_refresh_tokens(%s, %s, %s, lease_token => %s)",
                [cid, credentials, expires_at, token]).fetchone()
            outcome, extra = "refreshed", f" attempt={row['refresh_attempts']}"
        elif getattr(exc, "revoked", False):
            r = self.conn.execute(
                "SELECT * FROM provider_mark_revoked(%s, %s, lease_token => %s)",
                [cid, str(exc) or "revoked", token]).fetchone()
            outcome, extra = "revoked", ""
        else:
            retry = getattr(exc, "retry_after", None)
            r = self.conn.execute(
                "SELECT * FROM provider_record_refresh_failure(%s, %s, %s, %s)",
                [cid, token, str(exc) or type(exc).__name__,
                 timedelta(seconds=retry) if retry is not None else None]).fetchone()
            outcome, extra = "failed", ""
            if r["ok"]:
                a = self.conn.execute(
                    "SELECT refresh_failures, next_refresh_at, is_refresh_exhausted"
                    "  FROM provider_connections_overview WHERE id = %s", [cid]).fetchone()
                if a is not None:
                    outcome = "exhausted" if a["is_refresh_exhausted"] else "failed"
                    extra = f" attempt={a['refresh_failures']}" + (
                        f" next={a['next_refresh_at'].isoformat()}" if outcome == "failed" else "")
        if r["ok"]:
            self.counts[outcome] += 1
            self.say(f"{outcome} connection={cid}{extra}")
        elif r["error_code"] == "lease_lost":
            self.counts["lease_lost"] += 1
            self.say(f"lease_lost connection={cid} (stale: another worker holds it now)")
        else:
            # not_active (disconnected or marked meanwhile), not found: nothing to do.
            self.say(f"skipped connection={cid} outcome={outcome} error_code={r['error_code']}")

    def release(self, rows):
        """Give back the leases of claimed connections not handled."""
        for row in rows:
            if self.conn.execute("SELECT provider_release_lease(%s, %s) AS r",
                                 [row["connection_id"], row["lease_token"]]).fetchone()["r"]:
                self.counts["released"] += 1

    def run(self):
        """Claim, handle each connection, repeat; wait --idle when none."""
        self.say(f"start within={self.args.within} lease={self.args.lease} batch={self.args.batch}")
        while not stopping.is_set():
            rows = self.claim()
            if not rows:
                stopping.wait(self.args.idle)
                continue
            self.pending = list(rows)
            self.last_renewal = time.monotonic()
            while self.pending:
                if stopping.is_set():
                    self.release(self.pending)
                    break
                self.renew()
                if not self.pending:
                    break
                row = self.pending[0]
                future = self.call_provider(row)
                # Handled (whatever the outcome): no longer renewed.
                self.pending = [r for r in self.pending if r is not row]
                self.store(row, future)
            self.pending = []
        self.say("summary " + " ".join(f"{k}={v}" for k, v in self.counts.items()))
        self.pool.shutdown()
        self.conn.close()


def main(argv):
    """Entry point: exit 0 after a stop signal, 1 on any database error."""
    args = parse_args(argv)
    provider = load_provider(args.provider)
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    try:
        Worker(args, provider).run()
    except psycopg.Error as ex:
        print(f"refresh_worker: {type(ex).__name__}: {ex}".rstrip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
