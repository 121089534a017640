/*
 * events.h
 *		Domain events: one audit row and one NOTIFY per event.
 */
#ifndef PC_EVENTS_H
#define PC_EVENTS_H

#include "postgres.h"
#include "utils/uuid.h"

typedef enum PcCommand
{
	PC_CMD_CONNECT,
	PC_CMD_DISCONNECT,
	PC_CMD_REFRESH,
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
} PcEvent;

/* Longest reason, in bytes, kept in an audit row and a payload. */
#define PC_MAX_REASON_BYTES 800
/* Longest provider_slug, in bytes, kept in an event (valid ones are shorter). */
#define PC_MAX_EVENT_SLUG_BYTES 200

/*
 * Write the event's audit row and queue its NOTIFY on provider_events, in
 * the current transaction. Returns the audit row's id. Raises an error if the
 * row cannot be written: no change goes unrecorded. The caller is connected
 * to SPI.
 */
extern int64 pc_emit_event(const PcEvent *event);

/* The event_type of a command's outcome, e.g. "ProviderConnectionFailed". */
extern const char *pc_event_type(PcCommand command, PcOutcome outcome);

#endif							/* PC_EVENTS_H */
