-- requires: 0007
-- Which collections should get their ANN index built now (workers ask after their batches).
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here.

-- Collections among `collection_ids` (all when NULL) that asked for an index at a row count
-- (auto_index_min_rows), have no HNSW/IVFFlat index on their active store, and hold at least
-- that many rows. The count stops at the threshold, so a large store is never counted whole.
CREATE OR REPLACE FUNCTION pyembed.auto_index_due(collection_ids bigint[] DEFAULT NULL)
RETURNS TABLE (id bigint, name text, method text, options jsonb)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
    store regclass;
    enough boolean;
BEGIN
    FOR c IN
        SELECT * FROM pyembed.collections AS t
        WHERE t.auto_index_min_rows IS NOT NULL AND t.index_method <> 'none'
          AND t.active_version_id IS NOT NULL
          AND (collection_ids IS NULL OR t.id = ANY (collection_ids))
        ORDER BY t.id
    LOOP
        store := to_regclass(pyembed.store_table(c, c.active_version_id));
        CONTINUE WHEN store IS NULL OR EXISTS (
            SELECT FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid
            JOIN pg_am AS am ON am.oid = i.relam
            WHERE x.indrelid = store AND am.amname IN ('hnsw', 'ivfflat'));
        EXECUTE format('SELECT count(*) >= $1 FROM (SELECT FROM %s WHERE embedding IS NOT NULL '
                       'LIMIT $1) AS enough', store)
        INTO enough USING c.auto_index_min_rows;
        IF enough THEN
            id := c.id;
            name := c.name;
            method := c.index_method;
            options := c.index_options;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;
