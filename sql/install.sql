-- Installation: CREATE EXTENSION pulls in pgcrypto, and every object is
-- locked down: nothing is granted to PUBLIC, every function runs as the
-- extension owner with a pinned search_path.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS provider_connections CASCADE;
RESET client_min_messages;
CREATE EXTENSION provider_connections CASCADE;

-- pgcrypto's version is the server's (1.3 on 15 and 17, 1.4 on 18).
SELECT e.extname, CASE e.extname WHEN 'provider_connections' THEN e.extversion END AS extversion,
       n.nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname IN ('pgcrypto', 'provider_connections')
 ORDER BY 1;

-- The C entry points, their security and their search_path.
SELECT p.proname, p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c') AS is_c,
       p.prosecdef, p.proisstrict, p.provolatile, p.proconfig,
       pg_get_function_identity_arguments(p.oid) AS args
  FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'provider%'
 ORDER BY 1;

-- No privilege for PUBLIC on any function, table or sequence of ours.
SELECT count(*) AS public_grants
  FROM pg_depend d
  CROSS JOIN LATERAL aclexplode(CASE d.classid
        WHEN 'pg_proc'::regclass THEN (SELECT proacl FROM pg_proc WHERE oid = d.objid)
        WHEN 'pg_class'::regclass THEN (SELECT relacl FROM pg_class WHERE oid = d.objid)
       END) a
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'provider_connections')
   AND a.grantee = 0;

-- Tables, columns and indexes as the contract says.
\d provider_connections
\d provider_audit_log

-- Both tables and the audit sequence are dumped by pg_dump.
SELECT unnest(extconfig)::regclass AS dumped
  FROM pg_extension WHERE extname = 'provider_connections' ORDER BY 1;

-- The triggers fire even under session_replication_role = replica.
SELECT tgrelid::regclass, tgname, tgenabled
  FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2;
