/*
 * settings.c
 *		Module initialisation and the extension's settings.
 *
 * provider_connections.encryption_key seals every credential. It is a
 * superuser-only setting that is neither shown nor readable by other roles.
 * PostgreSQL stores ALTER DATABASE/ROLE ... SET and CREATE FUNCTION ... SET
 * values in catalogs every login role can read, so a key coming from there
 * is refused, with a hint naming the places that are safe.
 *
 * A key in postgresql.conf is only protected in backends that loaded this
 * library before anyone could run SHOW: until then PostgreSQL keeps it as an
 * ordinary placeholder setting that any role can read. Such a key is
 * therefore only used when the library is in shared_preload_libraries.
 *
 * provider_connections.test_clock pins the clock and the random part of
 * generated UUIDs so tests can compare events byte for byte; it is
 * superuser-only and empty in production.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "feed.h"
#include "settings.h"

PG_MODULE_MAGIC;

/*
 * GUC "extra" data: malloc'd up to PostgreSQL 15, from guc_malloc from 16 on.
 */
#if PG_VERSION_NUM >= 160000
#define PcGucMalloc(size) guc_malloc(LOG, (size))
#define PcGucFree(ptr) guc_free(ptr)
#else
#define PcGucMalloc(size) malloc(size)
#define PcGucFree(ptr) free(ptr)
#endif

/* Below this many characters a key is refused: it must not be guessable. */
#define PC_MIN_KEY_LENGTH 32

char	   *pc_encryption_key = NULL;
char	   *pc_encryption_key_previous = NULL;
static char *pc_test_clock_text = NULL;

/* Where the current key came from, remembered by its assign hook. */
static GucSource pc_key_source = PGC_S_DEFAULT;
static bool pc_preloaded = false;

static bool pc_test_clock_set = false;
static TimestampTz pc_test_clock_value = 0;

void		_PG_init(void);

/*
 * Refuse a key from a place other roles can read, or too short a key.
 * Our own message replaces PostgreSQL's default one, which would quote the
 * value.
 */
static bool
CheckKeySource(char **newval, void **extra, GucSource source)
{
	GucSource  *saved;

	if (*newval == NULL || (*newval)[0] == '\0')
		source = PGC_S_DEFAULT;
	else if (source == PGC_S_TEST || source == PGC_S_DATABASE ||
			 source == PGC_S_USER || source == PGC_S_DATABASE_USER)
	{
		GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
		GUC_check_errmsg("provider_connections encryption keys cannot be set per database, per role or per function");
		GUC_check_errdetail("Such settings are stored in catalogs that every role can read.");
		GUC_check_errhint("Set the key in postgresql.conf, with ALTER SYSTEM, or with SET in a superuser session.");
		return false;
	}
	else if (strlen(*newval) < PC_MIN_KEY_LENGTH)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errmsg("provider_connections encryption keys must be at least %d characters long",
						 PC_MIN_KEY_LENGTH);
		return false;
	}

	saved = PcGucMalloc(sizeof(GucSource));
	if (saved == NULL)
		return false;
	*saved = source;
	*extra = saved;
	return true;
}

static void
AssignKey(const char *newval, void *extra)
{
	pc_key_source = extra ? *(GucSource *) extra : PGC_S_DEFAULT;
}

static bool
CheckPreviousKey(char **newval, void **extra, GucSource source)
{
	if (!CheckKeySource(newval, extra, source))
		return false;
	/* The previous key's source is not needed: drop the note. */
	PcGucFree(*extra);
	*extra = NULL;
	return true;
}

static bool
CheckTestClock(char **newval, void **extra, GucSource source)
{
	TimestampTz *value;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;

	value = PcGucMalloc(sizeof(TimestampTz));
	if (value == NULL)
		return false;
	*value = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
													 CStringGetDatum(*newval),
													 ObjectIdGetDatum(InvalidOid),
													 Int32GetDatum(-1)));
	*extra = value;
	return true;
}

static void
AssignTestClock(const char *newval, void *extra)
{
	pc_test_clock_set = (extra != NULL);
	if (extra != NULL)
		pc_test_clock_value = *(TimestampTz *) extra;
}

const char *
pc_key_problem(void)
{
	if (pc_encryption_key == NULL || pc_encryption_key[0] == '\0')
		return "No encryption key configured (set provider_connections.encryption_key)";
	if (pc_key_source == PGC_S_FILE && !pc_preloaded)
		return "The encryption key in the server configuration is used only when provider_connections is in shared_preload_libraries";
	return NULL;
}

TimestampTz
pc_now(void)
{
	return pc_test_clock_set ? pc_test_clock_value : GetCurrentTimestamp();
}

bool
pc_test_clock_active(void)
{
	return pc_test_clock_set;
}

/*
 * Module load: define the settings. Runs in the postmaster when the library
 * is preloaded, otherwise in each backend on first use.
 */
void
_PG_init(void)
{
	pc_preloaded = process_shared_preload_libraries_in_progress;

	DefineCustomStringVariable("provider_connections.encryption_key",
							   "Key that seals provider credentials.",
							   "Superuser-only. Never stored in a table; set it in postgresql.conf or with ALTER SYSTEM.",
							   &pc_encryption_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   CheckKeySource, AssignKey, NULL);

	DefineCustomStringVariable("provider_connections.encryption_key_previous",
							   "Previous key, kept while credentials are re-encrypted to the current one.",
							   "Superuser-only. Clear it once provider_rotate_credentials reports nothing left.",
							   &pc_encryption_key_previous,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   CheckPreviousKey, NULL, NULL);

	DefineCustomStringVariable("provider_connections.test_clock",
							   "Pins the clock and generated ids, for reproducible tests only.",
							   NULL,
							   &pc_test_clock_text,
							   "",
							   PGC_SUSET,
							   GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							   CheckTestClock, AssignTestClock, NULL);

	MarkGUCPrefixReserved("provider_connections");
	pc_feed_init();
}
