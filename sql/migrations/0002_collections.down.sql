-- Undo 0002: collections (and their stores and triggers) go first, then the default model.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT name FROM pyembed.collections LOOP
        PERFORM pyembed.drop_collection(c.name, keep_store => false);
    END LOOP;
END
$$;
DROP INDEX pyembed.queue_by_collection;
DROP INDEX pyembed.queue_leased;
DELETE FROM pyembed.model_versions
WHERE model_id = (SELECT id FROM pyembed.models WHERE name = 'all-MiniLM-L6-v2');
DELETE FROM pyembed.models WHERE name = 'all-MiniLM-L6-v2';
-- Functions of revision 0002 that 0001 does not know.
DROP VIEW IF EXISTS pyembed.collection_status;
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'pyembed'::regnamespace
          AND p.proname IN ('create_collection', 'alter_collection', 'drop_collection',
                            'enqueue_all', 'source_rows', 'stored_hashes', 'apply_chunks',
                            'collection', 'store_table', '_pk_sql', '_text_sql', '_pk_match_sql',
                            '_create_store', '_create_view', '_capture_changes',
                            '_capture_truncate', '_collection_counts', '_qualified_source',
                            '_enqueue_sql')
    LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
END
$$;
