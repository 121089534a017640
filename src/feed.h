/*
 * feed.h
 *		Commit-ordered positions for the event feed (provider_events_since).
 */
#ifndef PC_FEED_H
#define PC_FEED_H

#include "postgres.h"

/* Install the transaction callback; called once from _PG_init. */
extern void pc_feed_init(void);

/*
 * Note that the current transaction wrote audit row audit_id in schema nsp;
 * it gets its global_position when the transaction commits.
 */
extern void pc_feed_note_event(Oid nsp, int64 audit_id);

#endif							/* PC_FEED_H */
