-- requires: 0002
-- Store tables (one per collection and model version) and each collection's chunk view.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here. @extschema:vector@ is
-- replaced by the (quoted) schema of the pgvector extension.

-- Create the store table of (collection, version) and the collection's chunk view over it.
CREATE OR REPLACE FUNCTION pyembed._create_store(c pyembed.collections, version_id bigint)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dims integer;
    vector_type text;
BEGIN
    SELECT m.dimensions INTO dims
    FROM pyembed.model_versions v JOIN pyembed.models m ON m.id = v.model_id
    WHERE v.id = version_id;
    vector_type := format('@extschema:vector@.%s(%s)', pyembed._store_kind(c, dims), dims);
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %s (%s, chunk_seq integer NOT NULL, chunk text NOT NULL, '
        'embedding %s, content_hash bytea NOT NULL, '
        'embedded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (%s, chunk_seq))',
        pyembed.store_table(c, version_id),
        (SELECT string_agg(format('%I %s NOT NULL', col, typ), ', ' ORDER BY ord)
           FROM unnest(c.pk_columns, c.pk_types) WITH ORDINALITY AS k(col, typ, ord)),
        vector_type,
        pyembed._key_columns(c));
    EXECUTE format('COMMENT ON TABLE %s IS %L', pyembed.store_table(c, version_id),
                   format('pyembed store of collection %s, model version %s', c.name, version_id));
    PERFORM pyembed._fit_store(c, version_id);  -- a store kept from before may need it
    -- The tsvector for hybrid search (revision 0007 on).
    IF to_regprocedure('pyembed._create_text_search(pyembed.collections,bigint,boolean)') IS NOT NULL THEN
        PERFORM pyembed._create_text_search(c, version_id, false);
    END IF;
    -- Who may read and write it: decided in 090_grants.sql (revision 0011 on).
    IF to_regprocedure('pyembed._grant_store(pyembed.collections,bigint)') IS NOT NULL THEN
        PERFORM pyembed._grant_store(c, version_id);
    END IF;
END
$$;

-- Make a store keep its vectors as its collection's storage says (a store kept by drop_collection
-- and taken up again, or a collection whose storage changed): ANN indexes of another operator
-- class go (they key another type, or the embedding instead of its bits), and the embedding
-- column changes type between vector and halfvec: a rewrite of the table, during which the
-- collection's searches and writes wait (the chunk view, which depends on the column, is created
-- again over it). The index for the storage is built next, by `pyembed index create` or
-- automatically (auto_index_min_rows).
CREATE OR REPLACE FUNCTION pyembed._fit_store(c pyembed.collections, version_id bigint)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    store text := pyembed.store_table(c, version_id);
    dims integer;
    kind text;
    wanted_opclass text;
    stale text;
BEGIN
    SELECT m.dimensions INTO dims FROM pyembed.model_versions AS v
    JOIN pyembed.models AS m ON m.id = v.model_id WHERE v.id = version_id;
    kind := pyembed._store_kind(c, dims);
    wanted_opclass := CASE WHEN pyembed._storage(c) = 'binary' THEN 'bit_hamming_ops'
                           ELSE kind || '_' || (pyembed._distance(c.distance)).ops END;
    FOR stale IN
        SELECT i.relname FROM pg_catalog.pg_index AS x
        JOIN pg_catalog.pg_class AS i ON i.oid = x.indexrelid
        JOIN pg_catalog.pg_am AS am ON am.oid = i.relam
        JOIN pg_catalog.pg_opclass AS o ON o.oid = x.indclass[0]
        WHERE x.indrelid = to_regclass(store) AND am.amname IN ('hnsw', 'ivfflat')
          AND o.opcname <> wanted_opclass
    LOOP
        EXECUTE format('DROP INDEX %I.%I', 'pyembed_store', stale);
        IF to_regclass('pyembed.index_builds') IS NOT NULL THEN  -- revision 0004 on
            UPDATE pyembed.index_builds AS b SET status = 'dropped'
            WHERE b.index_name = stale AND b.status = 'ready';
        END IF;
    END LOOP;
    IF (SELECT t.typname FROM pg_catalog.pg_attribute AS a JOIN pg_catalog.pg_type AS t
        ON t.oid = a.atttypid WHERE a.attrelid = to_regclass(store) AND a.attname = 'embedding')
       <> kind THEN
        EXECUTE format('DROP VIEW IF EXISTS %I.%I', 'pyembed_store', c.name || '_chunks');
        EXECUTE format('ALTER TABLE %1$s ALTER COLUMN embedding TYPE @extschema:vector@.%2$s(%3$s) '
                       'USING embedding::@extschema:vector@.%2$s(%3$s)', store, kind, dims);
        PERFORM pyembed._create_view(c);
    END IF;
    -- Its search function follows its storage (revision 0003 on).
    IF to_regprocedure('pyembed._compile_nearest(pyembed.collections,bigint)') IS NOT NULL THEN
        PERFORM pyembed._compile_nearest(c, version_id);
    END IF;
END
$$;

-- The view <collection>_chunks: source rows joined with their chunks in the active store.
-- security_invoker (PostgreSQL 15+) makes row-level security of the source and the store apply
-- to readers; without it the view would read as its owner, so older servers do not grant it.
CREATE OR REPLACE FUNCTION pyembed._create_view(c pyembed.collections)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    view_name text := format('%I.%I', 'pyembed_store', c.name || '_chunks');
    options text := CASE WHEN current_setting('server_version_num')::int >= 150000
                         THEN ' WITH (security_invoker = true)' ELSE '' END;
BEGIN
    EXECUTE format('DROP VIEW IF EXISTS %s', view_name);
    IF c.active_version_id IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format(
        'CREATE VIEW %s%s AS SELECT s.*, st.chunk_seq AS pyembed_chunk_seq, '
        'st.chunk AS pyembed_chunk, st.embedding AS pyembed_embedding, '
        'st.embedded_at AS pyembed_embedded_at FROM %s AS s JOIN %s AS st USING (%s)',
        view_name, options, pyembed._qualified_source(c),
        pyembed.store_table(c, c.active_version_id),
        pyembed._key_columns(c));
    EXECUTE format('COMMENT ON VIEW %s IS %L', view_name,
                   format('rows of %s with their chunks and embeddings (collection %s)',
                          pyembed._qualified_source(c), c.name));
    IF to_regprocedure('pyembed._grant_view(pyembed.collections)') IS NOT NULL THEN
        PERFORM pyembed._grant_view(c);
    END IF;
END
$$;
