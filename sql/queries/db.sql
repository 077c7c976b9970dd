-- Named queries of the database itself: extensions, server facts, migrations' helpers.
-- Python runs them by name (pyembed.db.queries.get); the names are unique across sql/queries/.

-- name: extension_installed
SELECT 1 FROM pg_extension WHERE extname = %(name)s;

-- name: extension_available_version
SELECT coalesce(installed_version, default_version) AS version
FROM pg_available_extensions
WHERE name = %(name)s;

-- name: database_exists
SELECT 1 FROM pg_database WHERE datname = %(name)s;

-- name: server_overview
SELECT current_setting('server_version') AS server_version,
       current_database() AS database,
       current_user AS "user",
       (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector_version,
       (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'vector') AS pgvector_schema,
       pg_is_in_recovery() AS in_recovery;

-- name: migration_lock
SELECT pg_advisory_xact_lock(:key);

-- name: set_local_search_path
SELECT set_config('search_path', %(path)s, true);

-- name: extension_schema
SELECT quote_ident(n.nspname)
FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
WHERE e.extname = %(name)s;

-- name: schema_exists
SELECT 1 FROM pg_namespace WHERE nspname = %(name)s;

-- name: function_overloads
-- Every overload of a function of schema pyembed, as a signature DROP FUNCTION accepts
-- (regprocedure output quotes the names as needed).
SELECT p.oid::regprocedure::text FROM pg_proc AS p
WHERE p.pronamespace = 'pyembed'::regnamespace AND p.proname = %(name)s;

-- name: function_rows
-- Every function of schema pyembed with the version of its catalog row: CREATE OR REPLACE
-- writes a new one (another ctid, even within the transaction that created it), so a function
-- whose row is where it was after re-applying was not re-defined.
SELECT p.oid, p.xmin::text || p.ctid::text AS row_version, p.proname, p.oid::regprocedure::text AS signature
FROM pg_proc AS p WHERE p.pronamespace = to_regnamespace('pyembed');

-- name: in_recovery
SELECT pg_is_in_recovery();

-- name: downgrade_blockers
-- Application objects that depend on pyembed's own (views over its tables, functions taking its
-- row types, foreign keys to it, triggers or defaults calling its functions): removing pyembed
-- would drop them with it, so a downgrade that removes pyembed refuses and names them.
WITH ours AS (
    SELECT 'pg_class'::regclass AS classid, cl.oid FROM pg_class AS cl
    WHERE cl.relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pyembed', 'pyembed_store'))
    UNION ALL
    SELECT 'pg_proc'::regclass, p.oid FROM pg_proc AS p
    WHERE p.pronamespace IN (SELECT oid FROM pg_namespace WHERE nspname = 'pyembed')
    UNION ALL
    SELECT 'pg_type'::regclass, t.oid FROM pg_type AS t
    WHERE t.typnamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pyembed', 'pyembed_store'))
),
dependents AS (
    SELECT DISTINCT d.classid, d.objid,
           CASE d.classid
               WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid)
               WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = d.objid)
               WHEN 'pg_constraint'::regclass THEN (SELECT conrelid FROM pg_constraint WHERE oid = d.objid)
               WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = d.objid)
               WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = d.objid)
               WHEN 'pg_class'::regclass THEN d.objid
           END AS relid,
           CASE d.classid WHEN 'pg_proc'::regclass
               THEN (SELECT pronamespace FROM pg_proc WHERE oid = d.objid) END AS proc_namespace
    FROM pg_depend AS d JOIN ours ON ours.classid = d.refclassid AND ours.oid = d.refobjid
    WHERE d.deptype IN ('n', 'a')
)
SELECT pg_describe_object(classid, objid, 0)
FROM dependents
WHERE coalesce((SELECT relnamespace FROM pg_class WHERE oid = relid), proc_namespace)
      NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pyembed', 'pyembed_store'))
  -- pyembed's own capture triggers on source tables go with their collections.
  AND NOT (classid = 'pg_trigger'::regclass AND EXISTS (
      SELECT FROM pg_trigger AS t WHERE t.oid = objid
        AND t.tgfoid IN (SELECT p.oid FROM pg_proc AS p
                         WHERE p.pronamespace = 'pyembed'::regnamespace
                           AND p.proname IN ('_capture_changes', '_capture_truncate'))))
ORDER BY 1;

-- name: drop_all_collections
-- Before a downgrade removes collections: their triggers leave the application's tables
-- (its tables and rows stay), their stores go.
DO $$
BEGIN
    IF to_regprocedure('pyembed.drop_collection(text,boolean)') IS NOT NULL THEN
        PERFORM pyembed.drop_collection(name) FROM pyembed.collections ORDER BY id;
    END IF;
END
$$;

-- name: acts_as_owner
SELECT to_regrole('pyembed_owner') IS NULL OR pg_has_role(current_user, 'pyembed_owner', 'USAGE');

-- name: max_results
SELECT pyembed.max_results();

-- name: schema_revision
SELECT pyembed.schema_revision();
