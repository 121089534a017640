/*
 * keys.c
 *		Where the encryption keys come from.
 *
 * A key is never the value of a setting: PostgreSQL logs every changed value
 * on reload ("parameter ... changed to ..."), stores SET statements in
 * pg_stat_statements and shows superuser-only settings to
 * pg_read_all_settings. The settings hold where the key is instead:
 *
 *	provider_connections.encryption_key_file			a path
 *	provider_connections.encryption_key_command			a command printing it
 *	and the same two with _previous_, for rotation.
 *
 * All four are PGC_SIGHUP: postgresql.conf, ALTER SYSTEM or the server's
 * command line only. A key set per session, role, database or function
 * would seal credentials under a key the other sessions cannot open, so
 * PostgreSQL refuses SET and every ALTER ... SET of them.
 *
 * A key file must be a regular file that neither group nor others can read,
 * owned by the server's user (or by root and readable by the group), as
 * PostgreSQL requires of ssl_key_file, and one the server can open: a
 * setting naming another file is refused (the old value stays). Relative
 * paths are relative to the data directory. Each backend reads a key on
 * first use and keeps it in malloc'd memory until one of these settings is
 * assigned again, which PostgreSQL does on every reload for settings in the
 * configuration files: a reload re-reads the key. A load that fails is not
 * kept: the next use tries again, so a key file put back or a key command
 * that was cancelled works again without a reload.
 *
 * The 1.1 settings that held the key itself (encryption_key and
 * encryption_key_previous) still exist only to refuse any value, with a
 * message that names the setting and never the value. PostgreSQL would log
 * the refused statement with its text (the key) after the error; an
 * emit_log_hook hides the statement of every error about a key setting.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/hmac.h"
#include "common/sha2.h"
#include "port.h"
#include "storage/fd.h"
#include "utils/guc.h"

#include "keys.h"

/* One key: its settings and what this backend loaded from them. */
typedef struct PcKeySlot
{
	const char *name;			/* "encryption_key" or "encryption_key_previous" */
	char	   *file;			/* the _file setting */
	char	   *command;		/* the _command setting */
	bool		loaded;			/* key/problem are up to date (never after a
								 * failed load: the next use retries) */
	char	   *key;			/* malloc'd, NUL-terminated; NULL if none */
	uint32		id;				/* pc_key_id of key */
	char		problem[512];	/* why there is no key; "" if none */
} PcKeySlot;

static PcKeySlot pc_current = {.name = "encryption_key"};
static PcKeySlot pc_previous = {.name = "encryption_key_previous"};

/* The retired settings: their values are refused, never used. */
static char *pc_retired_key = NULL;
static char *pc_retired_previous_key = NULL;

/* The emit_log_hook before ours, called after ours. */
static emit_log_hook_type pc_prev_emit_log_hook = NULL;

/* Forget a slot's key, wiping it from memory. */
static void
ForgetKey(PcKeySlot *slot)
{
	if (slot->key != NULL)
	{
		explicit_bzero(slot->key, strlen(slot->key));
		free(slot->key);
	}
	slot->key = NULL;
	slot->loaded = false;
	slot->problem[0] = '\0';
}

/*
 * Why path may not hold a key, or NULL: the checks PostgreSQL makes of
 * ssl_key_file (be-secure-common.c, check_ssl_key_file_permissions).
 */
static const char *
KeyFilePermissionProblem(const char *path, char *buf, size_t buflen)
{
	struct stat st;

	if (stat(path, &st) != 0)
		snprintf(buf, buflen, "could not access key file \"%s\": %m", path);
	else if (!S_ISREG(st.st_mode))
		snprintf(buf, buflen, "key file \"%s\" is not a regular file", path);
	else if (st.st_uid != geteuid() && st.st_uid != 0)
		snprintf(buf, buflen, "key file \"%s\" must be owned by the database user or root", path);
	else if ((st.st_uid == geteuid() && (st.st_mode & (S_IRWXG | S_IRWXO))) ||
			 (st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))))
		snprintf(buf, buflen, "key file \"%s\" has group or world access; it must be u=rw (0600) or less if owned by the database user, or u=rw,g=r (0640) or less if owned by root", path);
	else
		return NULL;
	return buf;
}

/* The number of bytes of key in buf[0..len), trailing whitespace cut. */
static size_t
TrimKey(const char *buf, size_t len)
{
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
					   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	return len;
}

/* The HMAC-SHA256 key id of key: what sealed values record (crypto.c). */
static bool
ComputeKeyId(const char *key, uint32 *id)
{
	static const char label[] = "provider_connections key id";
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	bool		ok;

	ok = ctx != NULL &&
		pg_hmac_init(ctx, (const uint8 *) key, strlen(key)) >= 0 &&
		pg_hmac_update(ctx, (const uint8 *) label, strlen(label)) >= 0 &&
		pg_hmac_final(ctx, mac, sizeof(mac)) >= 0;
	pg_hmac_free(ctx);
	if (ok)
		*id = ((uint32) mac[0] << 24) | ((uint32) mac[1] << 16) |
			((uint32) mac[2] << 8) | (uint32) mac[3];
	explicit_bzero(mac, sizeof(mac));
	return ok;
}

/* Keep buf[0..len) as slot's key if it is a usable key; wipe buf. */
static void
AcceptKey(PcKeySlot *slot, char *buf, size_t len, const char *from)
{
	len = TrimKey(buf, len);
	if (memchr(buf, '\0', len) != NULL)
		snprintf(slot->problem, sizeof(slot->problem),
				 "The key from %s contains a zero byte", from);
	else if (len < PC_MIN_KEY_LENGTH)
		snprintf(slot->problem, sizeof(slot->problem),
				 "The key from %s is shorter than %d characters", from, PC_MIN_KEY_LENGTH);
	else if ((slot->key = malloc(len + 1)) == NULL)
		snprintf(slot->problem, sizeof(slot->problem), "out of memory");
	else
	{
		memcpy(slot->key, buf, len);
		slot->key[len] = '\0';
		if (!ComputeKeyId(slot->key, &slot->id))
		{
			ForgetKey(slot);
			snprintf(slot->problem, sizeof(slot->problem),
					 "Could not compute the id of the key from %s", from);
		}
	}
	explicit_bzero(buf, PC_MAX_KEY_LENGTH + 1);
}

/*
 * Read slot's key from its file. With read(2) into a buffer we wipe: a stdio
 * stream would leave a copy of the key in its own buffer, freed unwiped.
 */
static void
ReadKeyFile(PcKeySlot *slot)
{
	char		buf[PC_MAX_KEY_LENGTH + 1];
	char		from[MAXPGPATH + 64];
	char		why[MAXPGPATH + 256];
	int			fd;
	size_t		len = 0;
	ssize_t		n;

	snprintf(from, sizeof(from), "key file \"%s\"", slot->file);
	if (KeyFilePermissionProblem(slot->file, why, sizeof(why)) != NULL)
	{
		snprintf(slot->problem, sizeof(slot->problem), "%s", why);
		slot->problem[0] = pg_toupper((unsigned char) slot->problem[0]);
		return;
	}
	fd = OpenTransientFile(slot->file, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		snprintf(slot->problem, sizeof(slot->problem),
				 "Could not open key file \"%s\": %m", slot->file);
		return;
	}
	while (len < sizeof(buf) &&
		   (n = read(fd, buf + len, sizeof(buf) - len)) != 0)
	{
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			explicit_bzero(buf, sizeof(buf));
			snprintf(slot->problem, sizeof(slot->problem),
					 "Could not read key file \"%s\": %m", slot->file);
			CloseTransientFile(fd);
			return;
		}
		len += n;
	}
	CloseTransientFile(fd);
	if (len > PC_MAX_KEY_LENGTH)
	{
		explicit_bzero(buf, sizeof(buf));
		snprintf(slot->problem, sizeof(slot->problem),
				 "Key file \"%s\" is longer than %d bytes", slot->file, PC_MAX_KEY_LENGTH);
		return;
	}
	AcceptKey(slot, buf, len, from);
}

/* Run slot's key command and take what it prints (as ssl_passphrase_command). */
static void
RunKeyCommand(PcKeySlot *slot)
{
	char		buf[PC_MAX_KEY_LENGTH + 1];
	char		from[128];
	FILE	   *f;
	size_t		len;
	int			rc;

	snprintf(from, sizeof(from), "provider_connections.%s_command", slot->name);
	fflush(NULL);
	f = OpenPipeStream(slot->command, "r");
	if (f == NULL)
	{
		snprintf(slot->problem, sizeof(slot->problem), "Could not run %s: %m", from);
		return;
	}
	/* Unbuffered: fread fills buf directly, leaving no copy in a stdio buffer. */
	setvbuf(f, NULL, _IONBF, 0);
	len = fread(buf, 1, sizeof(buf), f);
	/* Drain the rest so the command does not die of SIGPIPE. */
	while (len > PC_MAX_KEY_LENGTH && fread(buf + PC_MAX_KEY_LENGTH, 1, 1, f) == 1)
		;
	rc = ClosePipeStream(f);
	if (rc != 0)
	{
		explicit_bzero(buf, sizeof(buf));
		snprintf(slot->problem, sizeof(slot->problem), "%s failed: %s",
				 from, wait_result_to_str(rc));
	}
	else if (len > PC_MAX_KEY_LENGTH)
	{
		explicit_bzero(buf, sizeof(buf));
		snprintf(slot->problem, sizeof(slot->problem),
				 "%s printed more than %d bytes", from, PC_MAX_KEY_LENGTH);
	}
	else
		AcceptKey(slot, buf, len, from);
}

/*
 * Load slot's key unless this backend holds what the settings give. Only an
 * outcome that can change with the settings alone is kept (a key, or no key
 * configured); a failed load is retried by the next use, since the file or
 * the command may work by then (a key file put back, a key command that a
 * statement_timeout cancelled).
 */
static void
LoadKey(PcKeySlot *slot)
{
	bool		has_file = slot->file != NULL && slot->file[0] != '\0';
	bool		has_command = slot->command != NULL && slot->command[0] != '\0';

	if (slot->loaded)
		return;
	ForgetKey(slot);
	if (has_file && has_command)
		snprintf(slot->problem, sizeof(slot->problem),
				 "Both provider_connections.%s_file and provider_connections.%s_command are set; set only one",
				 slot->name, slot->name);
	else if (has_file)
		ReadKeyFile(slot);
	else if (has_command)
		RunKeyCommand(slot);
	else if (slot == &pc_current)
		snprintf(slot->problem, sizeof(slot->problem),
				 "No encryption key configured (set provider_connections.encryption_key_file)");
	slot->loaded = slot->key != NULL || (!has_file && !has_command);
}

/*
 * Why the current key cannot be used, as a sentence for a result row, or
 * NULL when it can.
 */
const char *
pc_key_problem(void)
{
	LoadKey(&pc_current);
	return pc_current.key == NULL ? pc_current.problem : NULL;
}

/* Why the previous key configured cannot be used, or NULL. */
const char *
pc_previous_key_problem(void)
{
	LoadKey(&pc_previous);
	return pc_previous.problem[0] != '\0' ? pc_previous.problem : NULL;
}

/* The current key; the caller checked pc_key_problem() first. */
const char *
pc_current_key(void)
{
	LoadKey(&pc_current);
	if (pc_current.key == NULL)
		elog(ERROR, "provider_connections: no usable encryption key");
	return pc_current.key;
}

/* The id of the current key; the caller checked pc_key_problem() first. */
uint32
pc_current_key_id(void)
{
	(void) pc_current_key();
	return pc_current.id;
}

/*
 * The configured key (current or previous) whose id is id, or NULL. The
 * previous key is loaded only when the current one does not match, so a
 * broken previous key (retried on every load) costs nothing to the calls
 * that do not need it.
 */
const char *
pc_key_with_id(uint32 id)
{
	LoadKey(&pc_current);
	if (pc_current.key != NULL && pc_current.id == id)
		return pc_current.key;
	LoadKey(&pc_previous);
	if (pc_previous.key != NULL && pc_previous.id == id)
		return pc_previous.key;
	return NULL;
}

/*
 * The ids of the usable configured keys, for provider_key_status: *current
 * and *previous are set, and true returned for each, when that key loads.
 */
bool
pc_configured_key_ids(uint32 *current, bool *has_previous, uint32 *previous)
{
	LoadKey(&pc_current);
	LoadKey(&pc_previous);
	*has_previous = pc_previous.key != NULL;
	if (*has_previous)
		*previous = pc_previous.id;
	if (pc_current.key == NULL)
		return false;
	*current = pc_current.id;
	return true;
}

/*
 * Check hook of the _file settings: an empty value, or a file that passes
 * the permission rules and that the server can open for reading (a file
 * left owned by root with mode 0600 passes the rules, yet every load of it
 * would fail). Only opened, never read: the key is read on first use.
 */
static bool
CheckKeyFile(char **newval, void **extra, GucSource source)
{
	char		why[MAXPGPATH + 256];
	int			fd;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (KeyFilePermissionProblem(*newval, why, sizeof(why)) != NULL)
	{
		GUC_check_errdetail("%s.", why);
		return false;
	}
	fd = open(*newval, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
	{
		GUC_check_errdetail("could not open key file \"%s\" for reading as the server's user: %m.", *newval);
		return false;
	}
	close(fd);
	return true;
}

/* Assign hooks: the next use re-reads the key. Also run on every reload. */
static void
AssignCurrentKeySource(const char *newval, void *extra)
{
	ForgetKey(&pc_current);
}

static void
AssignPreviousKeySource(const char *newval, void *extra)
{
	ForgetKey(&pc_previous);
}

/* Refuse a retired setting's value without quoting it; name says which. */
static bool
RefuseRetiredKey(char **newval, const char *name)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	GUC_check_errcode(ERRCODE_FEATURE_NOT_SUPPORTED);
	GUC_check_errmsg("provider_connections.%s is no longer supported; its value is ignored", name);
	GUC_check_errhint("Write the key to a file only the server's user can read, set provider_connections.%s_file to its path, and remove provider_connections.%s.",
					  name, name);
	return false;
}

/* Check hooks of the retired settings that held the keys themselves. */
static bool
CheckRetiredKey(char **newval, void **extra, GucSource source)
{
	return RefuseRetiredKey(newval, "encryption_key");
}

static bool
CheckRetiredPreviousKey(char **newval, void **extra, GucSource source)
{
	return RefuseRetiredKey(newval, "encryption_key_previous");
}

/*
 * emit_log_hook: no statement text after an error about a key setting. A
 * refused SET, ALTER SYSTEM SET, ALTER ROLE ... SET or function SET of one
 * may carry a key in its text (an operator following 1.1's documentation
 * writes ALTER SYSTEM SET provider_connections.encryption_key = '<key>'),
 * which log_min_error_statement would log as STATEMENT. Every message
 * PostgreSQL or we raise about these settings names the setting.
 */
static void
HideKeySettingStatement(ErrorData *edata)
{
	if (edata->message != NULL &&
		strstr(edata->message, "provider_connections.encryption_key") != NULL)
		edata->hide_stmt = true;
	if (pc_prev_emit_log_hook != NULL)
		pc_prev_emit_log_hook(edata);
}

/* Define one key's _file and _command settings. */
static void
DefineKeySettings(PcKeySlot *slot, GucStringAssignHook assign)
{
	char	   *file_name = psprintf("provider_connections.%s_file", slot->name);
	char	   *command_name = psprintf("provider_connections.%s_command", slot->name);

	DefineCustomStringVariable(file_name,
							   slot == &pc_current ?
							   "File holding the key that seals provider credentials." :
							   "File holding the previous key, accepted for opening credentials during a rotation.",
							   "Must not be readable by group or others. Relative to the data directory. Set in postgresql.conf or by ALTER SYSTEM only.",
							   &slot->file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   CheckKeyFile, assign, NULL);
	DefineCustomStringVariable(command_name,
							   slot == &pc_current ?
							   "Command that prints the key that seals provider credentials." :
							   "Command that prints the previous key.",
							   "Set in postgresql.conf only, like ssl_passphrase_command.",
							   &slot->command,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, assign, NULL);
}

/* Define the key settings; called from _PG_init. */
void
pc_keys_init(void)
{
	DefineKeySettings(&pc_current, AssignCurrentKeySource);
	DefineKeySettings(&pc_previous, AssignPreviousKeySource);
	pc_prev_emit_log_hook = emit_log_hook;
	emit_log_hook = HideKeySettingStatement;

	DefineCustomStringVariable("provider_connections.encryption_key",
							   "Retired in 1.2: refuses any value. Use provider_connections.encryption_key_file.",
							   NULL,
							   &pc_retired_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   CheckRetiredKey, NULL, NULL);
	DefineCustomStringVariable("provider_connections.encryption_key_previous",
							   "Retired in 1.2: refuses any value. Use provider_connections.encryption_key_previous_file.",
							   NULL,
							   &pc_retired_previous_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   CheckRetiredPreviousKey, NULL, NULL);
}
