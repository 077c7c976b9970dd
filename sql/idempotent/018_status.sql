-- requires: 0002
-- collection_status: what each collection holds and owes.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here. @extschema:vector@ is
-- replaced by the (quoted) schema of the pgvector extension.

-- Counts for the status view (exact: a full count of the source and the active store).
CREATE OR REPLACE FUNCTION pyembed._collection_counts(
    c pyembed.collections, OUT source_rows bigint, OUT embedded_rows bigint, OUT skipped_rows bigint,
    OUT chunks bigint)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass(pyembed._qualified_source(c)) IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', pyembed._qualified_source(c)) INTO source_rows;
    IF c.active_version_id IS NOT NULL
       AND to_regclass(pyembed.store_table(c, c.active_version_id)) IS NOT NULL THEN
        EXECUTE format('SELECT count(*) FILTER (WHERE chunk_seq = 0 AND embedding IS NOT NULL), '
                       'count(*) FILTER (WHERE chunk_seq = 0 AND embedding IS NULL), '
                       'count(*) FILTER (WHERE embedding IS NOT NULL) FROM %s',
                       pyembed.store_table(c, c.active_version_id))
        INTO embedded_rows, skipped_rows, chunks;
    END IF;
END
$$;

CREATE OR REPLACE VIEW pyembed.collection_status AS
SELECT c.name AS collection,
       format('%I.%I', c.source_schema, c.source_table) AS source,
       counts.source_rows,
       counts.embedded_rows,
       counts.skipped_rows,
       counts.chunks,
       coalesce(q.pending, 0) AS pending,
       coalesce(q.retrying, 0) AS retrying,
       coalesce(f.failed, 0) AS failed,
       now() - q.oldest AS oldest_pending_age,
       m.name || ' v' || av.version AS active_model_version,
       m.name || ' v' || pv.version AS pending_model_version
FROM pyembed.collections AS c
JOIN pyembed.models AS m ON m.id = c.model_id
LEFT JOIN pyembed.model_versions AS av ON av.id = c.active_version_id
LEFT JOIN pyembed.model_versions AS pv ON pv.id = c.pending_version_id
CROSS JOIN LATERAL pyembed._collection_counts(c) AS counts
LEFT JOIN LATERAL (
    SELECT count(*) AS pending, count(*) FILTER (WHERE attempts > 0) AS retrying,
           min(enqueued_at) AS oldest
    FROM pyembed.queue WHERE collection_id = c.id) AS q ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS failed FROM pyembed.failed_items WHERE collection_id = c.id) AS f ON true
-- Only collections whose source the caller may read (counts then follow its row-level security).
WHERE to_regclass(format('%I.%I', c.source_schema, c.source_table)) IS NULL
   OR has_table_privilege(to_regclass(format('%I.%I', c.source_schema, c.source_table)), 'SELECT');
COMMENT ON VIEW pyembed.collection_status IS
    'per collection the caller may read: source rows, embedded, skipped (no text), pending, failed, '
    'oldest pending age, model';
