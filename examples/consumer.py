#!/usr/bin/python3
"""examples/consumer.py: an event consumer of provider_connections.

It sends (here: records) the e-mail notifications the original system sent
when a user's provider connection changed: one for every event whose type
ends in "Succeeded" (connected, disconnected, tokens refreshed, and whatever
*Succeeded types a later version adds), and one asking the user to connect
again for every ProviderTokenRefreshFailed event with needs_user_action.
Each e-mail is a row of consumer.consumer_emails; a real consumer would hand
it to a mail queue (an outbox table, as here, that a mailer drains).

How it works (see README.md, "The event feed"):

  - It reads the events with provider_events_since(position, batch), a feed
    in commit order that never skips or repeats an event for a reader that
    stores its position, and stores its position in
    consumer.consumer_position. The e-mails of a batch and the new position
    commit in ONE transaction: after a crash, the batch is either wholly
    done (and the position says so) or not at all (and it is read again).
    That is what makes it exactly-once. The primary key on event_id is only
    a second guard: the INSERT is a plain one, so a duplicate would raise
    and stop the consumer rather than be silently skipped.
  - The position row is locked (SELECT ... FOR UPDATE) for the whole batch,
    so two instances running under the same consumer name take turns and
    never handle the same batch: the second one waits, then reads on from
    the position the first one stored.
  - LISTEN provider_events is only a wake-up: the payload is never read
    (a listener that was disconnected misses notifications, and the payload
    may hold only ids). It reads the feed on every notification and at the
    latest every --timeout seconds, until a batch comes back short.
  - Events it had not handled yet may have been purged
    (provider_purge_events with a bound above its stored position): the
    feed then refuses to read on (SQLSTATE 72000, naming the purge horizon).
    It stops with a message saying so (exit status 1); run it once with
    --skip-purged to go on after the horizon, which it then reports on
    stderr. Those events are lost to it: restore them from a backup if they
    matter.
  - SIGTERM or SIGINT: it finishes the batch in progress, commits, and
    exits 0. Any error stops it with exit status 1 and a message on stderr;
    run it under a supervisor that restarts it (systemd Restart=on-failure,
    a Kubernetes Deployment): everything it needs to resume is in the
    database.

It prints one line per batch it committed, to stdout:
    batch consumer=emails position=1234 handled=50 emails=17 wake=notify

Run it (psycopg 3, Debian's python3-psycopg) with a libpq connection string
or URI, or none and the PG* environment variables (PGHOST, PGPORT,
PGDATABASE, PGUSER; a password from ~/.pgpass or PGPASSFILE, never from
here):

    /usr/bin/python3 examples/consumer.py 'host=/run/postgresql dbname=app user=mailer'
    /usr/bin/python3 examples/consumer.py --init 'dbname=app user=mailer'   # set-up only
    PGDATABASE=app PGUSER=mailer /usr/bin/python3 examples/consumer.py --batch 500

The role needs what README.md, "Security model", gives an event consumer
(USAGE on the extension's schema, EXECUTE on provider_events_since) and,
on its first run only, CREATE on the database for its schema: it creates
only what is missing, so once --init (or a first run) has made them, the
CREATE can be revoked:

    CREATE ROLE mailer LOGIN;
    GRANT USAGE ON SCHEMA public TO mailer;
    GRANT EXECUTE ON FUNCTION provider_events_since(bigint, integer, boolean) TO mailer;
    GRANT CREATE ON DATABASE app TO mailer;

Copyright (c) 2026, provider_connections developers.
Released under the PostgreSQL License (see LICENSE).
"""

import argparse
import os
import select
import signal
import socket
import sys

import psycopg
from psycopg import sql

CHANNEL = "provider_events"

# Serializes the first-run set-up of several instances starting at once:
# concurrent CREATE TABLE IF NOT EXISTS of the same table can still fail
# with a unique violation in the catalogs. Any constant shared by all
# instances will do.
SETUP_LOCK_KEY = 0x70636F6E  # "pcon"

# Set by the SIGTERM / SIGINT handler; checked between batches.
stopping = False


def parse_args(argv):
    """Command line: the connection string and the knobs of the loop."""
    p = argparse.ArgumentParser(
        description="Record the e-mails of provider_connections events, exactly once.")
    p.add_argument("conninfo", nargs="?", default=os.environ.get("PC_CONSUMER_CONNINFO", ""),
                   help="libpq connection string or URI (default: $PC_CONSUMER_CONNINFO, "
                        "else the PG* environment variables)")
    p.add_argument("--name", default="emails",
                   help="consumer name: instances with the same name share one position")
    p.add_argument("--batch", type=int, default=1000, help="events per transaction (default 1000)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="read the feed at least this often, in seconds, notified or not (default 10)")
    p.add_argument("--schema", default="consumer", help="schema of the consumer's tables")
    p.add_argument("--feed-schema", default="public",
                   help="schema where provider_connections is installed (default public)")
    p.add_argument("--init", action="store_true",
                   help="only create the schema, tables and position row if missing, then exit "
                        "(at deployment: CREATE on the database can then be revoked)")
    p.add_argument("--skip-purged", action="store_true",
                   help="when events it had not handled were purged, say so on stderr and go on "
                        "after them (default: stop with an error)")
    args = p.parse_args(argv)
    if args.batch < 1 or args.timeout <= 0:
        p.error("--batch must be at least 1 and --timeout positive")
    return args


def on_stop_signal(signum, frame):
    """SIGTERM / SIGINT: ask the loop to stop after the batch in progress.

    Sets a flag and says so: a batch is never cut short (it would roll
    back, which is safe, but finishing it is cleaner). The wake-up fd that
    run() installs interrupts the wait for notifications. os.write, not
    print: the handler may run in the middle of a print of the loop."""
    global stopping
    if not stopping:
        os.write(sys.stdout.fileno(),
                 f"stopping on {signal.Signals(signum).name}: finishing any batch in progress\n"
                 .encode())
    stopping = True


def connect(conninfo):
    """A connection in autocommit mode.

    Autocommit, with explicit `with conn.transaction()` blocks for the
    batches: nothing ever stays idle in a transaction between two batches
    (which would hold back vacuum and, on the listening connection, the
    delivery of notifications, which a session only receives between
    transactions)."""
    params = {}
    if "PGAPPNAME" not in os.environ and "application_name" not in conninfo:
        params["application_name"] = "provider_events consumer"
    return psycopg.connect(conninfo, autocommit=True, **params)


def ensure_schema(conn, args):
    """Create the consumer's schema, tables and position row if missing.

    Only what is missing is created, so once they exist the role needs no
    CREATE privilege any more. The schema is created by the consumer's own
    role, which therefore owns it."""
    s = sql.Identifier(args.schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [SETUP_LOCK_KEY])
        names = [sql.SQL("{}.{}").format(s, sql.Identifier(t)).as_string(conn)
                 for t in ("consumer_position", "consumer_emails")]
        missing = conn.execute(
            "SELECT to_regclass(%s) IS NULL OR to_regclass(%s) IS NULL", names).fetchone()[0]
        if missing:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.consumer_position ("
                " consumer text PRIMARY KEY,"
                " position bigint NOT NULL)").format(s))
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.consumer_emails ("
                " event_id uuid PRIMARY KEY,"
                " audit_id bigint NOT NULL,"
                " global_position bigint NOT NULL,"
                " user_id uuid,"
                " kind text NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT now())").format(s))
        # 0: before the first event. A new consumer of an old log therefore
        # goes through the whole history; start it at the current head
        # instead (INSERT the row yourself) if it must not.
        conn.execute(sql.SQL(
            "INSERT INTO {}.consumer_position (consumer, position) VALUES (%s, 0)"
            " ON CONFLICT (consumer) DO NOTHING").format(s), [args.name])


def email_kind(event_type, action, needs_user_action):
    """The e-mail an event asks for (a template name), or None for none.

    The rule is generic on purpose: every event type ending in "Succeeded",
    whatever the version adds (1.3's ProviderFailureMarkSucceeded, say),
    named by its action; and a refresh failure the user must act upon
    (reconnect). Types named otherwise get none: 1.3's
    ProviderConnectionRecovered follows a ProviderConnectionSucceeded that
    already has its e-mail, ProviderConnectionStatusChanged records a
    direct UPDATE, ProviderEventsPurged concerns no user."""
    if event_type.endswith("Succeeded"):
        return action or event_type
    if event_type == "ProviderTokenRefreshFailed" and needs_user_action is True:
        return "reconnect_required"
    return None


class PurgedEvents(Exception):
    """The feed refused to read on: events after the stored position were purged."""


def handle_batch(conn, args, skip_purged=False):
    """Handle one batch in one transaction; returns (position, events, e-mails).

    Lock the position row, read the events after it, insert their e-mails,
    store the last event's position, commit: all or nothing. An instance
    that finds the row locked waits for the other to commit, then reads on
    from the position that one stored (READ COMMITTED: FOR UPDATE returns
    the newest version of the row)."""
    s = sql.Identifier(args.schema)
    with conn.transaction():
        position = conn.execute(sql.SQL(
            "SELECT position FROM {}.consumer_position WHERE consumer = %s FOR UPDATE").format(s),
            [args.name]).fetchone()[0]
        # Inside the transaction, so the events read and the position stored
        # go together. The feed only needs a read-write READ COMMITTED
        # transaction (the default) to include everything committed before
        # the call (README: "The event feed").
        # 72000: events after the position were purged (README, "The event
        # feed"); the transaction is then rolled back, and the caller decides.
        try:
            events = conn.execute(sql.SQL(
                "SELECT global_position, audit_id, event_id, event_type, action, user_id,"
                "       needs_user_action"
                "  FROM {}.provider_events_since(%s, %s, skip_purged => %s)").format(
                    sql.Identifier(args.feed_schema)),
                [position, args.batch, skip_purged]).fetchall()
        except psycopg.errors.SnapshotTooOld as ex:
            raise PurgedEvents(f"{ex.diag.message_primary}. {ex.diag.message_detail}") from ex
        emails = []
        for global_position, audit_id, event_id, event_type, action, user_id, nua in events:
            kind = email_kind(event_type, action, nua)
            if kind is not None:
                emails.append((event_id, audit_id, global_position, user_id, kind))
        if emails:
            with conn.cursor() as cur:
                # A plain INSERT: a duplicate raises (see the header).
                cur.executemany(sql.SQL(
                    "INSERT INTO {}.consumer_emails (event_id, audit_id, global_position, user_id, kind)"
                    " VALUES (%s, %s, %s, %s, %s)").format(s), emails)
        if events:
            position = events[-1][0]
            conn.execute(sql.SQL(
                "UPDATE {}.consumer_position SET position = %s WHERE consumer = %s").format(s),
                [position, args.name])
    return position, len(events), len(emails)


def wait_for_wakeup(listen_conn, wakeup_sock, timeout):
    """Wait for a notification, a stop signal or the timeout; returns why.

    Notifications are drained and their payloads ignored: whatever they
    say, the feed is read next. On a timeout, a trivial query checks that
    the listening connection still works (a dead one raises: better to
    stop and be restarted than to wait for notifications that never come)."""
    if stopping:
        return "stop"
    fd = listen_conn.fileno()
    ready, _, _ = select.select([fd, wakeup_sock], [], [], timeout)
    if wakeup_sock in ready:
        try:
            while wakeup_sock.recv(64):
                pass
        except BlockingIOError:
            pass
    if fd in ready:
        pgconn = listen_conn.pgconn
        pgconn.consume_input()  # raises if the connection was lost
        notified = False
        while pgconn.notifies() is not None:
            notified = True
        if notified:
            return "notify"
    if stopping:
        return "stop"
    if not ready:
        listen_conn.execute("SELECT 1")
        return "timeout"
    return "other"


def run(args):
    """Set up, then alternate: read the feed until a short batch, wait."""
    # Two connections: one only LISTENs and is always idle, so it receives
    # notifications at any time, even while the other waits for the
    # position lock or runs a long batch; the other does the work in
    # transactions. (On one connection the notifications would only arrive
    # between transactions, and every wait would have to end with a query.)
    work = connect(args.conninfo)
    ensure_schema(work, args)
    if args.init:
        print(f"init consumer={args.name} schema={args.schema}", flush=True)
        work.close()
        return
    listen_conn = connect(args.conninfo)
    # LISTEN before the first read: whatever commits after this read may
    # miss, a notification reports.
    listen_conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))

    wakeup_r, wakeup_w = socket.socketpair()
    wakeup_r.setblocking(False)
    wakeup_w.setblocking(False)
    signal.set_wakeup_fd(wakeup_w.fileno(), warn_on_full_buffer=False)

    position = work.execute(sql.SQL(
        "SELECT position FROM {}.consumer_position WHERE consumer = %s").format(
            sql.Identifier(args.schema)), [args.name]).fetchone()[0]
    print(f"start consumer={args.name} position={position} batch={args.batch}", flush=True)

    why = "start"
    while not stopping:
        try:
            position, handled, sent = handle_batch(work, args)
        except PurgedEvents as ex:
            if not args.skip_purged:
                raise
            print(f"consumer {args.name}: skipping purged events: {ex}", file=sys.stderr, flush=True)
            position, handled, sent = handle_batch(work, args, skip_purged=True)
        if handled:
            print(f"batch consumer={args.name} position={position} handled={handled}"
                  f" emails={sent} wake={why}", flush=True)
        if handled == args.batch:
            why = "more"  # a full batch: there may be more right away
            continue
        why = wait_for_wakeup(listen_conn, wakeup_r, args.timeout)

    print(f"stop consumer={args.name} position={position}", flush=True)
    work.close()
    listen_conn.close()


def main(argv):
    """Entry point: exit 0 after a stop signal, 1 on any error."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    try:
        run(args)
    except psycopg.Error as ex:
        print(f"consumer {args.name}: {type(ex).__name__}: {ex}".rstrip(), file=sys.stderr)
        return 1
    except PurgedEvents as ex:
        print(f"consumer {args.name}: events it had not handled were purged: {ex}\n"
              "Run it with --skip-purged to go on after them.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
