-- requires: 0009
-- What evaluation and training read from a collection.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects and grants here.

-- A version's chunks with their text and embedding, of rows that still exist in the source.
CREATE OR REPLACE FUNCTION pyembed.store_chunks(collection_name text, version_id bigint)
RETURNS TABLE (pk jsonb, chunk text, embedding vector)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
BEGIN
    IF to_regclass(pyembed.store_table(c, version_id)) IS NULL THEN
        RAISE EXCEPTION 'collection "%" has no store for model version %', c.name, version_id
            USING ERRCODE = 'undefined_table',
                  HINT = 'the version was never promoted there, or it was retired';
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT %s, st.chunk, st.embedding::@extschema:vector@.vector FROM %s AS st '
        'JOIN %s AS s USING (%s) WHERE st.embedding IS NOT NULL',
        pyembed._pk_sql(c, 'st'), pyembed.store_table(c, version_id), pyembed._qualified_source(c),
        pyembed._key_columns(c));
END
$$;

-- The same without the text (best for evaluating the model alone: no index, no search function
-- in between; evaluations that rerank read the chunks above).
CREATE OR REPLACE FUNCTION pyembed.store_embeddings(collection_name text, version_id bigint)
RETURNS TABLE (pk jsonb, embedding vector)
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sc.pk, sc.embedding FROM pyembed.store_chunks(collection_name, version_id) AS sc
$$;

-- Every source row of a collection with the text it embeds (NULL text left out).
CREATE OR REPLACE FUNCTION pyembed.source_texts(collection_name text)
RETURNS TABLE (pk jsonb, body text)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT * FROM (SELECT %s AS pk, %s AS body FROM %s AS s) AS t WHERE t.body IS NOT NULL',
        pyembed._pk_sql(c, 's'), pyembed._text_sql(c, 's'), pyembed._qualified_source(c));
END
$$;
