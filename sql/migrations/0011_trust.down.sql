-- Undo 0011: the log tables lose their row-level security and tenant, the stores theirs, the
-- admin settings go, and pyembed's objects go back to the role running the downgrade.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT pol.polname, cl.oid::regclass AS rel FROM pg_policy AS pol
        JOIN pg_class AS cl ON cl.oid = pol.polrelid
        WHERE cl.relnamespace IN ('pyembed'::regnamespace, 'pyembed_store'::regnamespace)
    LOOP
        EXECUTE format('DROP POLICY %I ON %s', r.polname, r.rel);
    END LOOP;
    FOR r IN
        SELECT cl.oid::regclass AS rel FROM pg_class AS cl
        WHERE cl.relnamespace = 'pyembed_store'::regnamespace AND cl.relkind = 'r'
          AND cl.relrowsecurity
    LOOP
        EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', r.rel);
    END LOOP;
    IF to_regrole('pyembed_owner') IS NOT NULL THEN
        EXECUTE format('REASSIGN OWNED BY pyembed_owner TO %I', current_user);
    END IF;
END
$$;
ALTER TABLE pyembed.query_log DISABLE ROW LEVEL SECURITY;
ALTER TABLE pyembed.query_results DISABLE ROW LEVEL SECURITY;
ALTER TABLE pyembed.feedback DISABLE ROW LEVEL SECURITY;
DROP TABLE pyembed.settings;
DROP INDEX pyembed.query_log_by_searcher;
ALTER TABLE pyembed.query_log DROP COLUMN tenant;
DO $$
BEGIN
    IF to_regrole('pyembed_owner') IS NOT NULL THEN
        DROP ROLE pyembed_owner;
    END IF;
EXCEPTION WHEN dependent_objects_still_exist THEN
    RAISE NOTICE 'role pyembed_owner is still used by another database; kept';
END
$$;
