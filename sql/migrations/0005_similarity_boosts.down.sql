-- Undo 0005: the boosts and the functions that read them.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'pyembed'::regnamespace
          AND p.proname IN ('cosine_similarity', 'weighted_cosine_similarity',
                            'domain_boost', 'domain_aware_similarity', 'search_domain_aware')
    LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
END
$$;
DROP TABLE pyembed.similarity_boosts;
