-- requires: 0002
-- What workers read and write: source rows with their text, stored hashes, staged chunks.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here. @extschema:vector@ is
-- replaced by the (quoted) schema of the pgvector extension.

-- The rows of a collection's source for a jsonb array of keys, with the text to embed, read with
-- the caller's (the worker's) rights. A key without a row has row_exists false when the caller
-- sees every row of the source, and NULL when row-level security may hide it: then nobody can
-- tell a hidden row from a deleted one, and the worker must not delete its embeddings.
CREATE OR REPLACE FUNCTION pyembed.source_rows(collection_name text, keys jsonb)
RETURNS TABLE (pk jsonb, body text, row_exists boolean)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
    sees_all boolean := pyembed._sees_every_row(pyembed._qualified_source(c)::regclass);
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT k.v, r.body, CASE WHEN r.pk IS NOT NULL THEN true WHEN $2 THEN false END '
        'FROM jsonb_array_elements($1) AS k(v) '
        'LEFT JOIN (SELECT %s AS pk, %s AS body FROM %s AS s WHERE %s) AS r ON r.pk = k.v',
        pyembed._pk_sql(c, 's'), pyembed._text_sql(c, 's'), pyembed._qualified_source(c),
        pyembed._pk_match_sql(c, 's', '$1'))
    USING keys, sees_all;
END
$$;

-- The application's vectors of `keys` in the collection's adopted column (pk, NULL vector for a
-- row that has none yet), read with the caller's rights like source_rows.
CREATE OR REPLACE FUNCTION pyembed.source_vectors(collection_name text, keys jsonb)
RETURNS TABLE (pk jsonb, embedding @extschema:vector@.vector)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
BEGIN
    IF NOT c.settings ? 'embedding_column' THEN
        RAISE EXCEPTION 'collection "%" adopts no vector column', collection_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT %s, s.%I::@extschema:vector@.vector FROM %s AS s WHERE %s',
        pyembed._pk_sql(c, 's'), c.settings->>'embedding_column', pyembed._qualified_source(c),
        pyembed._pk_match_sql(c, 's', '$1'))
    USING keys;
END
$$;

-- The content hash stored for each key in a store (chunk 0 carries it).
CREATE OR REPLACE FUNCTION pyembed.stored_hashes(collection_name text, version_id bigint, keys jsonb)
RETURNS TABLE (pk jsonb, content_hash bytea)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT %s, st.content_hash FROM %s AS st WHERE st.chunk_seq = 0 AND %s',
        pyembed._pk_sql(c, 'st'), pyembed.store_table(c, version_id),
        pyembed._pk_match_sql(c, 'st', '$1'))
    USING keys;
END
$$;

-- Replace the chunks of `keys` in a store by those staged in pg_temp.pyembed_chunks
-- (the worker fills it with binary COPY in the same transaction). Returns rows written.
CREATE OR REPLACE FUNCTION pyembed.apply_chunks(collection_name text, version_id bigint, keys jsonb)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
    store text := pyembed.store_table(c, version_id);
    n bigint;
BEGIN
    EXECUTE format('DELETE FROM %s AS st WHERE %s', store, pyembed._pk_match_sql(c, 'st', '$1'))
    USING keys;
    EXECUTE format(
        'INSERT INTO %s (%s, chunk_seq, chunk, embedding, content_hash) '
        'SELECT %s, s.chunk_seq, s.chunk, s.embedding, s.content_hash '
        'FROM pg_temp.pyembed_chunks AS s WHERE s.version_id = $1',
        store,
        (SELECT string_agg(format('%I', col), ', ' ORDER BY ord)
           FROM unnest(c.pk_columns) WITH ORDINALITY AS k(col, ord)),
        (SELECT string_agg(format('(s.pk->>%s)::%s', ord - 1, typ), ', ' ORDER BY ord)
           FROM unnest(c.pk_types) WITH ORDINALITY AS k(typ, ord)))
    USING version_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
