/*
 * replication.c
 *		Logical replication of the extension's tables: what the guard, the
 *		commands and the feed do differently on a subscriber.
 *
 * On a subscriber the guard does not re-check transitions in the apply
 * worker, the commands and every other write refuse to run, and the feed
 * is the publisher's: src/README.md, "On a subscriber", says why.
 *
 * Copyright (c) 2026, provider_connections developers.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/pg_subscription.h"
#include "catalog/pg_subscription_rel.h"
#include "commands/trigger.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "replication/logicalworker.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "events.h"
#include "replication.h"
#include "worker.h"

/* PGPROC's local transaction id is vxid.lxid from PostgreSQL 17 on. */
#if PG_VERSION_NUM >= 170000
#define PC_MY_LXID (MyProc->vxid.lxid)
#else
#define PC_MY_LXID (MyProc->lxid)
#endif

/* The tables a subscriber replicates. */
typedef enum PcReplicatedTable
{
	PC_TABLE_CONNECTIONS,
	PC_TABLE_AUDIT_LOG,
	PC_TABLE_POSITIONS,
	PC_NUM_TABLES
} PcReplicatedTable;

static const char *const pc_table_names[PC_NUM_TABLES] = {
	"provider_connections", "provider_audit_log", "provider_event_positions"
};

/* How one table is subscribed in this database. */
typedef struct PcTableSubscription
{
	int			nsubs;			/* subscriptions replicating it here */
	Oid			subid;			/* the first one found */
	bool		ready;			/* each has finished its initial copy */
} PcTableSubscription;

/* What the current transaction found, for the schema it looked in. */
static LocalTransactionId pc_subs_lxid = InvalidLocalTransactionId;
static Oid	pc_subs_schema = InvalidOid;
static PcTableSubscription pc_subs[PC_NUM_TABLES];

/* This process has logged why its feed cannot be read (the worker). */
static bool pc_feed_warned = false;

bool
pc_replica_applying(void)
{
	/* The apply worker sets the role; a logical worker that did not would be checked. */
	return IsLogicalWorker() &&
		SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA;
}

/*
 * Whether this database has a subscription at all: the list of its
 * pg_subscription rows, which the catalog cache keeps from one transaction
 * to the next (until pg_subscription changes), so that a database without
 * any costs a hash lookup, not three index scans.
 */
static bool
DatabaseHasSubscriptions(void)
{
	CatCList   *list = SearchSysCacheList1(SUBSCRIPTIONNAME, ObjectIdGetDatum(MyDatabaseId));
	bool		any = list->n_members > 0;

	ReleaseSysCacheList(list);
	return any;
}

/* Find how each table of schema nsp is subscribed, once per transaction. */
static void
LoadSubscriptions(Oid nsp)
{
	Relation	rel;
	int			i;

	if (pc_subs_lxid == PC_MY_LXID && pc_subs_schema == nsp)
		return;
	memset(pc_subs, 0, sizeof(pc_subs));
	for (i = 0; i < PC_NUM_TABLES; i++)
		pc_subs[i].ready = true;
	pc_subs_lxid = PC_MY_LXID;
	pc_subs_schema = nsp;
	if (!DatabaseHasSubscriptions())
		return;

	rel = table_open(SubscriptionRelRelationId, AccessShareLock);
	for (i = 0; i < PC_NUM_TABLES; i++)
	{
		Oid			relid = get_relname_relid(pc_table_names[i], nsp);
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tup;

		if (!OidIsValid(relid))
			continue;
		ScanKeyInit(&key, Anum_pg_subscription_rel_srrelid, BTEqualStrategyNumber,
					F_OIDEQ, ObjectIdGetDatum(relid));
		scan = systable_beginscan(rel, SubscriptionRelSrrelidSrsubidIndexId, true,
								  NULL, 1, &key);
		while (HeapTupleIsValid(tup = systable_getnext(scan)))
		{
			Form_pg_subscription_rel sr = (Form_pg_subscription_rel) GETSTRUCT(tup);

			if (pc_subs[i].nsubs++ == 0)
				pc_subs[i].subid = sr->srsubid;
			if (sr->srsubstate != SUBREL_STATE_READY)
				pc_subs[i].ready = false;
		}
		systable_endscan(scan);
	}
	table_close(rel, AccessShareLock);
}

/*
 * Where a connection string connects, as "host=... port=... dbname=...":
 * only those (and hostaddr, service), never a user or a password. NULL if
 * it cannot be parsed.
 */
static char *
PublisherOf(const char *conninfo)
{
	static const char *const shown[] = {"host", "hostaddr", "port", "dbname", "service"};
	PQconninfoOption *options;
	PQconninfoOption *opt;
	char	   *err = NULL;
	StringInfoData buf;
	int			i;

	options = PQconninfoParse(conninfo, &err);
	if (options == NULL)
	{
		if (err != NULL)
			PQfreemem(err);
		return NULL;
	}
	initStringInfo(&buf);
	for (i = 0; i < lengthof(shown); i++)
		for (opt = options; opt->keyword != NULL; opt++)
			if (strcmp(opt->keyword, shown[i]) == 0 && opt->val != NULL && opt->val[0] != '\0')
				appendStringInfo(&buf, "%s%s=%s", buf.len > 0 ? " " : "", opt->keyword, opt->val);
	PQconninfoFree(options);
	return buf.data;
}

/*
 * The subscription's name and, when publisher is not NULL, where its
 * publisher is, for a message.
 */
static void
DescribeSubscription(Oid subid, const char **name, const char **publisher)
{
	Subscription *sub = GetSubscription(subid, true);

	*name = sub != NULL ? sub->name : "?";
	if (publisher == NULL)
		return;
	*publisher = sub != NULL ? PublisherOf(sub->conninfo) : NULL;
	if (*publisher == NULL)
		*publisher = "(its connection string cannot be shown)";
}

bool
pc_replica_subscribed(Oid nsp)
{
	int			i;

	LoadSubscriptions(nsp);
	for (i = 0; i < PC_NUM_TABLES; i++)
		if (pc_subs[i].nsubs > 0)
			return true;
	return false;
}

/*
 * Raise the error of a write on a subscriber if schema nsp has a table
 * subscribed: a call of function funcid or, when it is InvalidOid, the
 * write described by what ("UPDATE of ..."). Names are looked up only then.
 */
static void
Refuse(Oid nsp, Oid funcid, const char *what)
{
	int			i;
	const char *name;
	const char *publisher;

	LoadSubscriptions(nsp);
	for (i = 0; i < PC_NUM_TABLES; i++)
		if (pc_subs[i].nsubs > 0)
			break;
	if (i == PC_NUM_TABLES)
		return;
	if (OidIsValid(funcid))
		what = get_func_name(funcid);
	DescribeSubscription(pc_subs[i].subid, &name, &publisher);
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("%s cannot run on a logical replication subscriber", what),
			 errdetail("Table %s is replicated here by subscription \"%s\" from the publisher at %s.",
					   quote_qualified_identifier(get_namespace_name(nsp), pc_table_names[i]),
					   name, publisher),
			 OidIsValid(funcid) ?
			 errhint("Call %s on the publisher: its changes reach this database by replication.",
					 what) :
			 errhint("Make the change on the publisher: its changes reach this database by replication.")));
}

void
pc_refuse_on_subscriber(FunctionCallInfo fcinfo)
{
	Refuse(get_func_namespace(fcinfo->flinfo->fn_oid), fcinfo->flinfo->fn_oid, NULL);
}

void
pc_refuse_on_subscriber_in(Oid nsp, const char *what)
{
	Refuse(nsp, InvalidOid, what);
}

/*
 * Report, at elevel, why the feed cannot be read although its tables are
 * (partly) subscribed: one of the two is not, or they come from different
 * subscriptions.
 */
static void
ReportIncompleteFeed(int elevel, const PcTableSubscription *log,
					 const PcTableSubscription *pos)
{
	const char *name;

	if (log->nsubs == 0 || pos->nsubs == 0)
	{
		bool		has_log = log->nsubs > 0;

		DescribeSubscription(has_log ? log->subid : pos->subid, &name, NULL);
		ereport(elevel,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the event feed cannot be read on this subscriber: %s is replicated without %s",
						has_log ? "provider_audit_log" : "provider_event_positions",
						has_log ? "provider_event_positions" : "provider_audit_log"),
				 errdetail("Feed positions are assigned on the publisher and replicate with the audit rows; subscription \"%s\" replicates only one of the two.",
						   name),
				 errhint("Publish both tables, read by the same subscription, then run ALTER SUBSCRIPTION ... REFRESH PUBLICATION.")));
	}
	else
		ereport(elevel,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the event feed cannot be read on this subscriber: provider_audit_log and provider_event_positions are replicated by different subscriptions"),
				 errdetail("Only one subscription applies both in the publisher's commit order, which the feed needs."),
				 errhint("Replicate both tables with one subscription.")));
}

PcFeedSource
pc_feed_source(Oid nsp, bool reader)
{
	const PcTableSubscription *log;
	const PcTableSubscription *pos;
	const char *name;

	LoadSubscriptions(nsp);
	log = &pc_subs[PC_TABLE_AUDIT_LOG];
	pos = &pc_subs[PC_TABLE_POSITIONS];
	if (log->nsubs == 0 && pos->nsubs == 0)
	{
		pc_feed_warned = false;
		return PC_FEED_LOCAL;
	}
	if (log->nsubs != 1 || pos->nsubs != 1 || log->subid != pos->subid)
	{
		if (reader)
			ReportIncompleteFeed(ERROR, log, pos);
		if (!pc_feed_warned)
			ReportIncompleteFeed(WARNING, log, pos);
		pc_feed_warned = true;
		return PC_FEED_NOT_READY;
	}
	pc_feed_warned = false;
	if (log->ready && pos->ready)
		return PC_FEED_REPLICATED;
	if (reader)
	{
		DescribeSubscription(log->subid, &name, NULL);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the event feed cannot be read on this subscriber until its initial synchronization has finished"),
				 errdetail("Subscription \"%s\" has not finished copying %s.", name,
						   !log->ready ? "provider_audit_log" : "provider_event_positions"),
				 errhint("Read the feed again once pg_subscription_rel shows state \"r\" for both tables.")));
	}
	return PC_FEED_NOT_READY;
}

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/*
 * Utility hook: CREATE SUBSCRIPTION marks the database as wanting its
 * worker when it commits (worker_api.c), as a call's commit does: in
 * notify = worker mode the worker is what notifies replicated events, and
 * on a subscriber no call ever commits to start one that found the
 * extension absent earlier (the database was created, its worker came and
 * left, then the extension).
 */
static void
ReplicationProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						  ProcessUtilityContext context, ParamListInfo params,
						  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (IsA(pstmt->utilityStmt, CreateSubscriptionStmt))
		pc_worker_note_event(pc_events_notify_by_worker());
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/*
 * Install the utility hook; called from _PG_init when the library is
 * preloaded (without the workers there is nothing to wake).
 */
void
pc_replication_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = ReplicationProcessUtility;
}
