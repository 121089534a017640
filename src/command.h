/*
 * command.h
 *		What the commands share: a call's outcome, its events, the result
 *		row, argument checks, and the guarded write.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#ifndef PC_COMMAND_H
#define PC_COMMAND_H

#include "postgres.h"
#include "fmgr.h"
#include "utils/uuid.h"

#include "events.h"
#include "status.h"

/* Largest credentials accepted, in bytes (README, "Limits"): 1 MiB. */
#define PC_MAX_CREDENTIAL_BYTES 1048576
#define PC_MAX_SLUG_CHARS 50
#define PC_MAX_ALIAS_CHARS 100

/*
 * The error_code of a failure result. Each has one message, in
 * pc_result_codes (command.c); the README's error table lists the same.
 */
typedef enum PcResultCode
{
	PC_RESULT_INVALID_ARGUMENT,
	PC_RESULT_INVALID_PROVIDER_SLUG,
	PC_RESULT_INVALID_CREDENTIALS,
	PC_RESULT_CREDENTIALS_TOO_LARGE,
	PC_RESULT_INVALID_CREDENTIAL_TYPE,
	PC_RESULT_INVALID_ALIAS,
	PC_RESULT_CONNECTION_NOT_FOUND,
	PC_RESULT_NOT_OWNED_BY_USER,
	PC_RESULT_NOT_ACTIVE,
	PC_RESULT_INVALID_TRANSITION,
	PC_RESULT_ENCRYPTION_UNAVAILABLE,
	PC_RESULT_DATABASE_ERROR,
	PC_RESULT_LEASE_LOST,		/* 1.4 on */
	PC_NUM_RESULT_CODES
} PcResultCode;

typedef struct PcCall
{
	MemoryContext callcxt;		/* outlives SPI: the result is built here */
	PcEvent		event;			/* facts for the Attempted and outcome events */
	PcWrittenEvent attempted;	/* the Attempted event, written with the outcome */
	pg_uuid_t	call_id;		/* shared by the call's events */
	bool		ok;
	const char *error_code;
	const char *error;
	const pg_uuid_t *result_connection_id;
	bool		audit_success;	/* false: a success writes no events (record_sync) */
	bool		recovered;		/* write ProviderConnectionRecovered after Succeeded */
	const char *recorded_failure;	/* ok, but the outcome is Failed with this
									 * reason: the call recorded a failure made
									 * elsewhere (provider_record_refresh_failure) */
} PcCall;

extern void pc_call_begin(PcCall *call, FunctionCallInfo fcinfo, PcCommand command);
extern void pc_call_begin_in(PcCall *call, Oid nsp, PcCommand command);

extern void pc_call_attempted(PcCall *call);

extern void pc_call_fail(PcCall *call, PcResultCode code, const char *arg);
extern void pc_call_fail_null(PcCall *call, const char *argname);
extern void pc_call_fail_transition(PcCall *call, PcStatus from, PcStatus to);

extern void pc_call_record(PcCall *call);
extern Datum pc_call_finish(PcCall *call, FunctionCallInfo fcinfo);

/* The data change of a call, run by pc_guarded_write. */
typedef void (*PcWriteFn) (PcCall *call, void *arg);
extern bool pc_guarded_write(PcCall *call, PcWriteFn write, void *arg);
extern bool pc_command_writing(void);

extern bool pc_check_credentials(PcCall *call, FunctionCallInfo fcinfo, int argno);
extern bool pc_check_credential_type(PcCall *call, const char *type);
extern bool pc_check_slug(PcCall *call, const char *slug);
extern bool pc_check_alias(PcCall *call, const char *alias);
extern bool pc_check_expires_at(PcCall *call, FunctionCallInfo fcinfo, int argno, bool in_future);
extern bool pc_check_key(PcCall *call);
extern bool pc_check_user(PcCall *call, const pg_uuid_t *user_id);

/* What the commands read of an existing connection. */
typedef struct PcConnectionRow
{
	pg_uuid_t	user_id;
	pg_uuid_t	provider_id;
	char	   *provider_slug;
	PcStatus	status;
} PcConnectionRow;

extern bool pc_find_connection(const pg_uuid_t *id, const pg_uuid_t *user_id, PcConnectionRow *row);
extern bool pc_check_lease(PcCall *call, const pg_uuid_t *id, const pg_uuid_t *user_id,
						   const pg_uuid_t *lease_token);
extern bool pc_find_owned_connection(PcCall *call, const pg_uuid_t *id, const pg_uuid_t *user_id,
									 PcConnectionRow *row);
extern bool pc_call_find_connection(PcCall *call, bool by_user, const pg_uuid_t *user_id,
									const pg_uuid_t *id, PcConnectionRow *row);
extern void pc_call_describe(PcCall *call, const PcConnectionRow *row);
extern void pc_call_describe_attempted(PcCall *call, const PcConnectionRow *row);
extern bool pc_credential_type_valid(const char *type);

/*
 * Argument n of a function's 1.3 form (by connection id) in the form a call
 * came through: the 1.4 user-first form has the owner's id first.
 */
#define PC_FORM_ARG(by_user, n) ((n) + ((by_user) ? 1 : 0))

extern pg_uuid_t *pc_arg_uuid(FunctionCallInfo fcinfo, int argno);
extern char *pc_arg_text(FunctionCallInfo fcinfo, int argno);

#endif							/* PC_COMMAND_H */
