/*
 * command.h
 *		What the three commands share: a call's outcome, its events, the
 *		result row, argument checks, and the guarded write.
 */
#ifndef PC_COMMAND_H
#define PC_COMMAND_H

#include "postgres.h"
#include "fmgr.h"
#include "utils/uuid.h"

#include "events.h"

/* Largest credentials accepted, in bytes (README, "Limits"). */
#define PC_MAX_CREDENTIAL_BYTES (1024 * 1024)
#define PC_MAX_SLUG_CHARS 50
#define PC_MAX_ALIAS_CHARS 100

typedef struct PcCall
{
	MemoryContext callcxt;		/* outlives SPI: the result is built here */
	PcEvent		event;			/* facts for the Attempted and outcome events */
	int64		attempted_id;	/* audit id of the Attempted row */
	bool		ok;
	const char *error_code;
	const char *error;
	const pg_uuid_t *result_connection_id;
} PcCall;

/* Connect to SPI and prepare a call of the given command. */
extern void pc_call_begin(PcCall *call, FunctionCallInfo fcinfo, PcCommand command);

/* Write the Attempted event from call->event. */
extern void pc_call_attempted(PcCall *call);

/* Record a failure; the first one recorded wins. */
extern void pc_call_fail(PcCall *call, const char *error_code, const char *error);

/*
 * Write the outcome event (Succeeded unless a failure was recorded),
 * disconnect from SPI and return the provider_result row.
 */
extern Datum pc_call_finish(PcCall *call, FunctionCallInfo fcinfo);

/*
 * Run write(call, arg) in a subtransaction. An error inside it is caught,
 * rolled back, and recorded as database_error; the caller's transaction
 * stays usable. Returns false if that happened.
 */
typedef void (*PcWriteFn) (PcCall *call, void *arg);
extern bool pc_guarded_write(PcCall *call, PcWriteFn write, void *arg);

/* Argument checks shared by the commands; each records a failure. */
extern bool pc_check_credentials(PcCall *call, FunctionCallInfo fcinfo, int argno);
extern bool pc_check_credential_type(PcCall *call, const char *type);
extern bool pc_check_expires_at(PcCall *call, FunctionCallInfo fcinfo, int argno);
extern bool pc_check_key(PcCall *call);

/* What the commands read of an existing connection. */
typedef struct PcConnectionRow
{
	pg_uuid_t	user_id;
	pg_uuid_t	provider_id;
	char	   *provider_slug;
	char	   *status;
} PcConnectionRow;

/*
 * Read connection id without locking it; false if there is none. The row's
 * owner and provider cannot change (status.c), so checks made on them here
 * still hold once the row is locked.
 */
extern bool pc_find_connection(const pg_uuid_t *id, PcConnectionRow *row);

/* Argument helpers: NULL for a NULL argument. */
extern pg_uuid_t *pc_arg_uuid(FunctionCallInfo fcinfo, int argno);
extern char *pc_arg_text(FunctionCallInfo fcinfo, int argno);

#endif							/* PC_COMMAND_H */
