/*
 * uuid7.c
 *		UUIDv7 generation (RFC 9562).
 *
 * Layout: 48 bits of Unix time in milliseconds, version 7, 12 bits of
 * sub-millisecond time (RFC 9562 method 3, as PostgreSQL 18's uuidv7()
 * does), variant 10, then 62 random bits. Ids made by one backend are
 * strictly increasing even when the clock stalls or steps back, so a
 * connection's ids sort by creation within a session.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "clock.h"
#include "uuid7.h"

/* Microseconds between the Unix epoch and PostgreSQL's. */
#define PC_UNIX_EPOCH_OFFSET_US \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

/* The last (ms << 12 | sub-ms) this backend used, to stay monotonic. */
static uint64 pc_last_stamp = 0;

/*
 * Random bytes for the ids' random bits, drawn from pg_strong_random 256 at
 * a time: each pg_strong_random call costs a few microseconds whatever its
 * length (OpenSSL's RAND_status and RAND_bytes), and a call makes three or
 * four ids. The bytes are as random as before, each used once; the pool
 * belongs to the backend that filled it (pc_pool_pid), never to a child.
 */
#define PC_RANDOM_POOL_BYTES 256
static uint8 pc_pool[PC_RANDOM_POOL_BYTES];
static int	pc_pool_left = 0;
static int	pc_pool_pid = 0;

/* Take len bytes of the pool into out, refilling it first if need be. */
static void
RandomBytes(uint8 *out, int len)
{
	Assert(len <= PC_RANDOM_POOL_BYTES);
	if (pc_pool_left < len || pc_pool_pid != MyProcPid)
	{
		if (!pg_strong_random(pc_pool, sizeof(pc_pool)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random bytes for a UUID")));
		pc_pool_left = sizeof(pc_pool);
		pc_pool_pid = MyProcPid;
	}
	pc_pool_left -= len;
	memcpy(out, &pc_pool[pc_pool_left], len);
	memset(&pc_pool[pc_pool_left], 0, len);
}

static uint64
TimeStamp60(TimestampTz now)
{
	int64		unix_us = (int64) now + PC_UNIX_EPOCH_OFFSET_US;
	uint64		ms;
	uint64		sub;

	if (unix_us < 0)
		unix_us = 0;
	ms = (uint64) unix_us / 1000;
	/* The remaining microseconds scaled to 12 bits (0..4095). */
	sub = ((uint64) unix_us % 1000) * 4096 / 1000;
	return (ms << 12) | sub;
}

void
pc_uuid7(pg_uuid_t *out, TimestampTz now, uint64 test_seed)
{
	uint64		stamp = TimeStamp60(now);
	uint8		rnd[8];
	int			i;

	if (pc_test_clock_active())
	{
		/* Pinned clock: the seed stands in for the random bits. */
		for (i = 0; i < 8; i++)
			rnd[i] = (uint8) (test_seed >> (56 - 8 * i));
	}
	else
	{
		if (stamp <= pc_last_stamp)
			stamp = pc_last_stamp + 1;
		pc_last_stamp = stamp;
		RandomBytes(rnd, sizeof(rnd));
	}

	/* 48-bit millisecond timestamp, big-endian. */
	for (i = 0; i < 6; i++)
		out->data[i] = (uint8) (stamp >> (12 + 8 * (5 - i)));
	/* Version 7 and the 12 sub-millisecond bits. */
	out->data[6] = 0x70 | (uint8) ((stamp >> 8) & 0x0F);
	out->data[7] = (uint8) (stamp & 0xFF);
	/* Variant 10 and 62 random bits. */
	memcpy(&out->data[8], rnd, 8);
	out->data[8] = (out->data[8] & 0x3F) | 0x80;
}
