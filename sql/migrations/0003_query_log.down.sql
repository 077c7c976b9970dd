-- Undo 0003: the retrieval records and the functions that use them.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'pyembed'::regnamespace
          AND p.proname IN ('search', 'record_feedback', 'prune_query_log', '_distance_operator',
                            '_similarity_sql', '_check_search', '_has_column', '_nearest',
                            '_log_search')
    LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
END
$$;
DROP TABLE pyembed.feedback;
DROP TABLE pyembed.query_results;
DROP TABLE pyembed.query_log;
