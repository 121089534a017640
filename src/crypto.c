/*
 * crypto.c
 *		Sealing and opening credentials with pgcrypto.
 *
 * Credentials are sealed with pgcrypto's pgp_sym_encrypt_bytea: AES-256,
 * a fresh random salt and session prefix per message, and PGP's
 * modification detection code, so tampering is detected on opening. The
 * key is handed to pgcrypto as a function argument through fmgr; it never
 * appears in SQL text, so it cannot reach a log or pg_stat_statements.
 *
 * Each sealed value starts with a 7-byte header: "PC", format version 1,
 * then a 4-byte key id (the first bytes of HMAC-SHA256 of a fixed label
 * under the key, computed once per loaded key in keys.c). The id names the
 * key that sealed the value without revealing it, which is what key
 * rotation needs.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "crypto.h"
#include "keys.h"
#include "plans.h"

#define PC_SEAL_VERSION 1

/* The key is random and long (keys.c insists), so salted S2K suffices. */
#define PC_PGP_OPTIONS "cipher-algo=aes256, compress-algo=0, s2k-mode=1, s2k-digest-algo=sha1"

static FmgrInfo pc_encrypt_fn;
static FmgrInfo pc_decrypt_fn;
static bool pc_crypto_ready = false;

/* Find pgcrypto's functions by signature in pgcrypto's own schema. */
static void
LookupPgcrypto(void)
{
	Oid			nsp;
	char	   *schema;
	Oid			enc_args[3] = {BYTEAOID, TEXTOID, TEXTOID};
	Oid			dec_args[2] = {BYTEAOID, TEXTOID};
	Oid			enc,
				dec;

	if (pc_crypto_ready)
		return;
	nsp = pc_extension_schema("pgcrypto");
	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("provider_connections needs the pgcrypto extension"),
				 errhint("Run CREATE EXTENSION pgcrypto.")));
	schema = get_namespace_name(nsp);
	enc = LookupFuncName(list_make2(makeString(schema), makeString("pgp_sym_encrypt_bytea")),
						 3, enc_args, false);
	dec = LookupFuncName(list_make2(makeString(schema), makeString("pgp_sym_decrypt_bytea")),
						 2, dec_args, false);
	/* pgcrypto's C code stays loaded, so these stay valid for the backend. */
	fmgr_info_cxt(enc, &pc_encrypt_fn, TopMemoryContext);
	fmgr_info_cxt(dec, &pc_decrypt_fn, TopMemoryContext);
	pc_crypto_ready = true;
}

/*
 * The key id a value's first bytes name, or -1 unless they are our header
 * ("PC", version) and the value goes on past it; len is the value's length.
 */
int64
pc_header_key_id(const uint8 *p, Size len)
{
	if (len <= PC_SEAL_HEADER_LEN ||
		p[0] != 'P' || p[1] != 'C' || p[2] != PC_SEAL_VERSION)
		return -1;
	p += PC_SEAL_KEY_ID_OFFSET;
	return ((int64) p[0] << 24) | ((int64) p[1] << 16) |
		((int64) p[2] << 8) | (int64) p[3];
}

/* The id recorded in sealed bytes, or -1 if they carry no valid header. */
static int64
SealedKeyId(const bytea *sealed)
{
	return pc_header_key_id((const uint8 *) VARDATA_ANY(sealed), VARSIZE_ANY_EXHDR(sealed));
}

/*
 * Whether bytes start like a sealed value (magic, version, key id) and go
 * on past the header: what the guard asks of any value stored directly.
 * The first PC_SEAL_HEADER_LEN + 1 bytes are enough.
 */
bool
pc_seal_header_valid(const bytea *sealed)
{
	return SealedKeyId(sealed) >= 0;
}

/* The current key's id as the 4 bytes sealed values store, big-endian. */
void
pc_current_key_id_bytes(uint8 out[4])
{
	uint32		id = pc_current_key_id();

	out[0] = (uint8) (id >> 24);
	out[1] = (uint8) (id >> 16);
	out[2] = (uint8) (id >> 8);
	out[3] = (uint8) id;
}

bytea *
pc_seal(const bytea *plain)
{
	text	   *key = cstring_to_text(pc_current_key());
	bytea	   *msg;
	bytea	   *out;
	Size		len;
	uint8	   *p;

	LookupPgcrypto();
	msg = DatumGetByteaPP(FunctionCall3(&pc_encrypt_fn,
										PointerGetDatum(plain),
										PointerGetDatum(key),
										CStringGetTextDatum(PC_PGP_OPTIONS)));
	len = VARSIZE_ANY_EXHDR(msg);
	out = palloc(VARHDRSZ + PC_SEAL_HEADER_LEN + len);
	SET_VARSIZE(out, VARHDRSZ + PC_SEAL_HEADER_LEN + len);
	p = (uint8 *) VARDATA(out);
	p[0] = 'P';
	p[1] = 'C';
	p[2] = PC_SEAL_VERSION;
	pc_current_key_id_bytes(p + PC_SEAL_KEY_ID_OFFSET);
	memcpy(p + PC_SEAL_HEADER_LEN, VARDATA_ANY(msg), len);

	/* Do not leave the key in freed memory longer than needed. */
	explicit_bzero(VARDATA(key), VARSIZE(key) - VARHDRSZ);
	pfree(key);
	return out;
}

bytea *
pc_open(const bytea *sealed)
{
	int64		id = SealedKeyId(sealed);
	const char *keystr;
	text	   *key;
	bytea	   *msg;
	bytea	   *plain;
	Size		len;

	if (id < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stored provider credentials are not in a format provider_connections can open")));
	keystr = pc_key_with_id((uint32) id);
	if (keystr == NULL)
	{
		const char *previous = pc_previous_key_problem();

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("provider credentials were sealed with a key that is not configured"),
				 previous ?
				 errdetail("The credentials carry key id %08llx. The previous key cannot be used: %s.",
						   (unsigned long long) id, previous) :
				 errdetail("The credentials carry key id %08llx.", (unsigned long long) id),
				 errhint("Point provider_connections.encryption_key_file or provider_connections.encryption_key_previous_file at that key.")));
	}

	LookupPgcrypto();
	len = VARSIZE_ANY_EXHDR(sealed) - PC_SEAL_HEADER_LEN;
	msg = palloc(VARHDRSZ + len);
	SET_VARSIZE(msg, VARHDRSZ + len);
	memcpy(VARDATA(msg), (const char *) VARDATA_ANY(sealed) + PC_SEAL_HEADER_LEN, len);

	key = cstring_to_text(keystr);
	plain = DatumGetByteaPP(FunctionCall2(&pc_decrypt_fn,
										  PointerGetDatum(msg),
										  PointerGetDatum(key)));
	explicit_bzero(VARDATA(key), VARSIZE(key) - VARHDRSZ);
	pfree(key);
	pfree(msg);
	return plain;
}
