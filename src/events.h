/*
 * events.h
 *		Domain events: one audit row per event, and its notification.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_EVENTS_H
#define PC_EVENTS_H

#include "postgres.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/*
 * What an event is about: a command (Attempted, then Succeeded or Failed),
 * or a single notice written beside one (the rest, Succeeded only).
 */
typedef enum PcCommand
{
	PC_CMD_CONNECT,
	PC_CMD_DISCONNECT,
	PC_CMD_REFRESH,
	PC_CMD_BEGIN_CONNECT,		/* 1.3 on */
	PC_CMD_MARK_FAILED,
	PC_CMD_MARK_EXPIRED,
	PC_CMD_MARK_REVOKED,
	PC_CMD_RECORD_SYNC,
	PC_CMD_RECOVERY,			/* a connection needing re-authentication is active again */
	PC_CMD_STATUS_CHANGE,		/* a status changed by a direct UPDATE */
	PC_CMD_PURGE,				/* provider_purge_events removed old events */
	PC_CMD_DELETE,				/* a connection removed by a direct DELETE (1.4 on) */
	PC_NUM_COMMANDS
} PcCommand;

typedef enum PcOutcome
{
	PC_ATTEMPTED,
	PC_SUCCEEDED,
	PC_FAILED,
	PC_NUM_OUTCOMES
} PcOutcome;

/* What an event says. NULL pointers are facts that are not known. */
typedef struct PcEvent
{
	PcCommand	command;
	PcOutcome	outcome;
	const pg_uuid_t *user_id;
	const pg_uuid_t *connection_id;
	const pg_uuid_t *provider_id;
	const char *provider_slug;
	const char *reason;			/* Failed events only */
	bool		needs_user_action;	/* ProviderTokenRefreshFailed only */
	const pg_uuid_t *call_id;	/* shared by the events of one call */
	const char *details;		/* more JSON members for the context (and so the payload), or NULL */
} PcEvent;

/* An event as written: what its audit row adds to it. */
typedef struct PcWrittenEvent
{
	PcEvent		event;
	int64		audit_id;
	pg_uuid_t	event_id;
	TimestampTz occurred_at;
	int64		global_position;	/* 0: not known yet */
	int64		shard_id;		/* Citus: the shard whose feed numbered it; 0 on one node */
} PcWrittenEvent;

/* Most events one call writes: Attempted, its outcome, and a notice. */
#define PC_MAX_EVENTS_PER_CALL 3

/* Longest reason, in bytes, kept in an audit row and a payload. */
#define PC_MAX_REASON_BYTES 800
/* Longest provider_slug, in bytes, kept in an event (valid ones are shorter). */
#define PC_MAX_EVENT_SLUG_BYTES 200
/* The channel every notification goes to. */
#define PC_CHANNEL "provider_events"

/* Audit ids each Citus group numbers (events.c): group g from g << 48 + 1 on. */
#define PC_AUDIT_IDS_PER_GROUP (INT64CONST(1) << 48)

extern const pg_uuid_t pc_nil_user;

extern void pc_events_init(void);
extern void pc_event_stamp(const PcEvent *event, PcWrittenEvent *written);
extern void pc_write_events(const PcWrittenEvent *events, int n);
extern void pc_event_call_id(pg_uuid_t *out, const PcWrittenEvent *first);
extern void pc_write_notice(PcEvent *ev);
extern const char *pc_clip(const char *s, int maxbytes);
extern bool pc_event_from_type(const char *event_type, PcCommand *command, PcOutcome *outcome);
extern char *pc_event_payload(const PcWrittenEvent *written, Jsonb *context);
extern bool pc_event_left_to_worker(Jsonb *context);
extern void pc_json_text_member(StringInfo buf, const char *key, const char *value);
extern bool pc_events_notify_by_worker(void);

#endif							/* PC_EVENTS_H */
