#!/usr/bin/python3
"""examples/citus_consumer.py: an event consumer of provider_connections on Citus.

On a distributed install (provider_distribute(), docs/citus.md) there is no
single feed: each shard of provider_audit_log has its own, in commit order
within the shard (so per user), numbered by the node that holds the shard.
This consumer reads all of them:

  - provider_feed_shards(), on the coordinator, lists the feeds and the
    node holding each; it is asked again on every pass, so a shard that
    moved is read on its new node, from the same position (positions move
    with their rows). A read on a node the shard just left is refused
    (SQLSTATE 55000) and retried on the next pass.
  - provider_shard_events_since(shard, position, batch), on that node,
    returns the shard's events after the position.
  - A split replaces a shard by shards over parts of its users' hash range,
    holding its events with their positions, and numbering new ones above
    them. A shard this consumer has no position for starts at the position
    it had reached in a shard whose range held the new one's (its parent),
    or at 0 for a shard it never knew the parent of (a first run). The
    ranges are kept with the positions (consumer.citus_positions).
  - What it does with a batch (here: a row per event in
    consumer.citus_events, the outbox a real consumer would drain) and the
    shard's new position (consumer.citus_positions) commit in ONE
    transaction on the coordinator, with the position row locked: after a
    crash a batch is wholly done or read again, and two instances under the
    same name take turns. The primary key on event_id is a second guard: a
    duplicate raises and stops the consumer.
  - It reads until a pass finds nothing, then sleeps --interval seconds
    (--drain: exits instead). LISTEN on every node would wake it sooner
    (notify = worker: each node's worker notifies its shards' events).

It prints one line per batch it committed:
    batch consumer=emails shard=102008 position=1733240000000123 handled=50

Run it (psycopg 3) with a libpq connection string to the coordinator; the
nodes are reached with the same user and database, at the host and port
provider_feed_shards() names:

    /usr/bin/python3 examples/citus_consumer.py 'host=coordinator dbname=app user=mailer'

The role needs EXECUTE on provider_feed_shards and
provider_shard_events_since on every node (granted on the coordinator,
GRANT propagates), and CREATE on the coordinator's database for its schema
on the first run.

Copyright (c) 2026, provider_connections developers.
Released under the PostgreSQL License (see LICENSE).
"""
import argparse
import sys
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

SETUP = """
CREATE SCHEMA IF NOT EXISTS consumer;
CREATE TABLE IF NOT EXISTS consumer.citus_positions (
    consumer text NOT NULL, shard_id bigint NOT NULL, position bigint NOT NULL,
    min_hash integer NOT NULL, max_hash integer NOT NULL,
    PRIMARY KEY (consumer, shard_id));
CREATE TABLE IF NOT EXISTS consumer.citus_events (
    event_id uuid PRIMARY KEY, consumer text NOT NULL, shard_id bigint NOT NULL,
    position bigint NOT NULL, event_type text NOT NULL, user_id uuid,
    connection_id uuid, handled_at timestamptz NOT NULL DEFAULT now());
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("conninfo", nargs="?", default="")
    ap.add_argument("--name", default="emails", help="consumer name (its positions)")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--drain", action="store_true", help="exit once a pass finds nothing")
    args = ap.parse_args()

    coord = psycopg.connect(args.conninfo)
    coord.execute(SETUP)
    coord.commit()
    base = conninfo_to_dict(args.conninfo)
    nodes = {}

    def node(host, port):
        key = (host, port)
        if key not in nodes:
            nodes[key] = psycopg.connect(make_conninfo(**{**base, "host": host, "port": str(port)}),
                                         autocommit=True)
        return nodes[key]

    while True:
        handled = 0
        shards = coord.execute("""SELECT shard_id, node_name, node_port, min_hash, max_hash
                                    FROM provider_feed_shards()""").fetchall()
        coord.commit()
        for shard, host, port, lo, hi in shards:
            while True:
                # A new shard starts where its parent's feed was (a split), else at 0.
                coord.execute("""INSERT INTO consumer.citus_positions
                                 SELECT %(c)s, %(s)s, COALESCE(
                                   (SELECT max(p.position) FROM consumer.citus_positions p
                                     WHERE p.consumer = %(c)s AND p.min_hash <= %(lo)s AND p.max_hash >= %(hi)s
                                       AND p.shard_id <> %(s)s), 0), %(lo)s, %(hi)s
                                 ON CONFLICT DO NOTHING""", {"c": args.name, "s": shard, "lo": lo, "hi": hi})
                # Lock this shard's position for the batch: instances take turns.
                pos = coord.execute("""SELECT position FROM consumer.citus_positions
                                        WHERE consumer = %s AND shard_id = %s FOR UPDATE""",
                                    (args.name, shard)).fetchone()[0]
                try:
                    rows = node(host, port).execute(
                        """SELECT global_position, event_id, event_type, user_id, connection_id
                             FROM provider_shard_events_since(%s, %s, %s)""",
                        (shard, pos, args.batch)).fetchall()
                except psycopg.Error as e:
                    coord.rollback()
                    if e.sqlstate == "55000":   # the shard moved: next pass reads it where it is
                        break
                    raise
                if not rows:
                    coord.rollback()
                    break
                with coord.cursor() as cur:
                    cur.executemany("""INSERT INTO consumer.citus_events
                                         (event_id, consumer, shard_id, position, event_type, user_id, connection_id)
                                       VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                                    [(r[1], args.name, shard, r[0], r[2], r[3], r[4]) for r in rows])
                coord.execute("""UPDATE consumer.citus_positions SET position = %s
                                  WHERE consumer = %s AND shard_id = %s""", (rows[-1][0], args.name, shard))
                coord.commit()
                handled += len(rows)
                print(f"batch consumer={args.name} shard={shard} position={rows[-1][0]} handled={len(rows)}",
                      flush=True)
        if handled == 0:
            if args.drain:
                return 0
            time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
