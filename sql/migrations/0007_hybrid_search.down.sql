-- Undo 0007: hybrid search's functions, the stores' tsvector columns and the BM25 statistics.
DO $$
DECLARE
    f regprocedure;
    store record;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'pyembed'::regnamespace
          AND p.proname IN ('hybrid_search', '_create_text_search', '_text_search_config',
                            '_text_stats', '_text_matches', '_lexeme_tsquery',
                            'log_search', 'auto_index_due')
    LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
    FOR store IN
        SELECT cl.relname FROM pg_attribute a JOIN pg_class cl ON cl.oid = a.attrelid
        WHERE cl.relnamespace = 'pyembed_store'::regnamespace AND cl.relkind = 'r'
          AND a.attname = 'chunk_tsv' AND NOT a.attisdropped
    LOOP
        EXECUTE format('ALTER TABLE %I.%I DROP COLUMN chunk_tsv', 'pyembed_store', store.relname);
    END LOOP;
END
$$;
DROP TABLE pyembed.text_search_stats;
