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

-- Build a collection store's ANN index as pyembed's owner, for roles that are not (writers,
-- workers building automatic indexes): PostgreSQL lets only a table's owner create an index, and
-- CREATE INDEX CONCURRENTLY cannot run inside a function, so this build holds off writes to the
-- store (the workers' of this collection) until it is done; searches go on. The index is built
-- beside the old one and swapped in by name. The session's maintenance_work_mem applies.
-- SECURITY DEFINER, with every argument checked.
CREATE OR REPLACE FUNCTION pyembed.build_index(collection_name text, method text, params jsonb,
                                               version_id bigint DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed._lock_collection(collection_name);
    v bigint := coalesce(version_id, c.active_version_id);
    dims integer;
    index_name text;
    index_key text;
    options text;
BEGIN
    IF v IS NULL OR v NOT IN (c.active_version_id, coalesce(c.pending_version_id, 0)) THEN
        RAISE EXCEPTION 'model version % is not live in collection "%"', v, c.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF to_regclass(pyembed.store_table(c, v)) IS NULL THEN
        RAISE EXCEPTION 'collection "%" has no store for model version %', c.name, v
            USING ERRCODE = 'undefined_table';
    END IF;
    IF method = 'hnsw' AND jsonb_typeof(params->'m') = 'number'
       AND jsonb_typeof(params->'ef_construction') = 'number'
       AND (params->>'m')::numeric BETWEEN 2 AND 100
       AND (params->>'ef_construction')::numeric BETWEEN 4 AND 1000 THEN
        options := format('m = %s, ef_construction = %s', (params->>'m')::int,
                          (params->>'ef_construction')::int);
    ELSIF method = 'ivfflat' AND jsonb_typeof(params->'lists') = 'number'
          AND (params->>'lists')::numeric BETWEEN 1 AND 32768 THEN
        options := format('lists = %s', (params->>'lists')::int);
    ELSE
        RAISE EXCEPTION 'cannot build a % index with %', method, params
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'hnsw takes m (2-100) and ef_construction (4-1000); ivfflat takes lists (1-32768)';
    END IF;
    SELECT m.dimensions INTO dims FROM pyembed.model_versions AS mv
    JOIN pyembed.models AS m ON m.id = mv.model_id WHERE mv.id = v;
    index_key := pyembed._index_key(c, dims);
    index_name := pyembed._store_name(c.name, v) || '_' || method;
    EXECUTE format('DROP INDEX IF EXISTS %I.%I', 'pyembed_store', index_name || '_new');
    EXECUTE format('CREATE INDEX %I ON %s USING %s (%s) WITH (%s)',
                   index_name || '_new', pyembed.store_table(c, v), method, index_key, options);
    EXECUTE format('DROP INDEX IF EXISTS %I.%I', 'pyembed_store', index_name);
    EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', 'pyembed_store', index_name || '_new',
                   index_name);
    RETURN index_name;
END
$$;

-- Drop a collection's ANN index of a method (or all of them) as pyembed's owner, for roles that
-- are not; returns the names dropped. SECURITY DEFINER: names come from the catalog only.
CREATE OR REPLACE FUNCTION pyembed.drop_index(collection_name text, method text DEFAULT NULL)
RETURNS text[]
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed._lock_collection(collection_name);
    found record;
    dropped text[] := '{}';
BEGIN
    FOR found IN
        SELECT i.relname FROM pg_catalog.pg_index AS x
        JOIN pg_catalog.pg_class AS i ON i.oid = x.indexrelid
        JOIN pg_catalog.pg_am AS am ON am.oid = i.relam
        WHERE x.indrelid = to_regclass(pyembed.store_table(c, c.active_version_id))
          AND am.amname IN ('hnsw', 'ivfflat') AND (drop_index.method IS NULL OR am.amname = drop_index.method)
    LOOP
        EXECUTE format('DROP INDEX %I.%I', 'pyembed_store', found.relname);
        dropped := dropped || found.relname::text;
    END LOOP;
    RETURN dropped;
END
$$;
