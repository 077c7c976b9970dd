-- Named queries of searching and ANN indexes: stores, builds, recall samples, the search call.
-- Python runs them by name (pyembed.db.queries.get); the names are unique across sql/queries/.

-- name: collection_store
-- The store of a collection's version (default: the active one); its model gives the dimension.
SELECT c.id, c.name, c.distance, v.id AS version_id, m.dimensions,
       pyembed._store_name(c.name, v.id) AS store, pyembed._store_kind(c, m.dimensions) AS vector_kind,
       (pyembed._distance(c.distance)).operator, pyembed._index_key(c, m.dimensions) AS index_key,
       pyembed._storage(c) AS storage,
       pyembed._binary_sql('embedding', m.dimensions) AS binary_key,
       pyembed._rerank(c) AS rerank
FROM pyembed.collections AS c
JOIN pyembed.model_versions AS v ON v.id = coalesce(%(version_id)s::bigint, c.active_version_id)
JOIN pyembed.models AS m ON m.id = v.model_id
WHERE c.name = %(name)s;

-- name: create_hnsw_index
CREATE INDEX CONCURRENTLY {index} ON {table} USING hnsw ({key})
WITH (m = {m}, ef_construction = {ef_construction});

-- name: create_ivfflat_index
CREATE INDEX CONCURRENTLY {index} ON {table} USING ivfflat ({key})
WITH (lists = {lists});

-- name: drop_index
DROP INDEX CONCURRENTLY IF EXISTS {index};

-- name: build_index
SELECT pyembed.build_index(%(name)s, %(method)s, %(params)s, %(version_id)s);

-- name: drop_index_as_owner
SELECT pyembed.drop_index(%(name)s, %(method)s);

-- name: store_rows
SELECT count(*) FROM {table} WHERE embedding IS NOT NULL;

-- name: index_size
SELECT pg_relation_size(to_regclass(%(index)s)), (SELECT indisvalid FROM pg_index
       WHERE indexrelid = to_regclass(%(index)s));

-- name: index_progress
SELECT pid, phase, blocks_done, blocks_total, tuples_done, tuples_total
FROM pg_stat_progress_create_index WHERE relid = to_regclass(%(table)s);

-- name: index_build_start
INSERT INTO pyembed.index_builds (collection_id, model_version_id, index_name, method, params,
                                  rows_indexed)
VALUES (%(collection_id)s, %(version_id)s, %(index)s, %(method)s, %(params)s, %(rows)s)
RETURNING id;

-- name: index_build_finish
UPDATE pyembed.index_builds
SET status = %(status)s, finished_at = now(), duration_ms = %(duration_ms)s,
    size_bytes = %(size_bytes)s, recall_at_10 = %(recall)s, recall_queries = %(queries)s,
    error = %(error)s
WHERE id = %(id)s;

-- name: index_build_tuning
UPDATE pyembed.index_builds SET tuning = %(tuning)s
WHERE id = (SELECT max(id) FROM pyembed.index_builds
            WHERE index_name = %(index)s AND status = 'ready');

-- name: index_build_dropped
UPDATE pyembed.index_builds SET status = 'dropped'
WHERE index_name = %(index)s AND status = 'ready' AND id IS DISTINCT FROM %(keep)s;

-- name: store_indexes
SELECT i.relname AS index_name, am.amname AS method, t.relname AS store,
       pg_relation_size(i.oid) AS size_bytes, x.indisvalid AS valid,
       b.recall_at_10, b.duration_ms, b.params
FROM pg_index AS x
JOIN pg_class AS i ON i.oid = x.indexrelid
JOIN pg_class AS t ON t.oid = x.indrelid
JOIN pg_am AS am ON am.oid = i.relam
LEFT JOIN LATERAL (
    SELECT recall_at_10, duration_ms, params FROM pyembed.index_builds AS ib
    WHERE ib.index_name = i.relname AND ib.status = 'ready' ORDER BY ib.id DESC LIMIT 1) AS b ON true
WHERE t.relnamespace = 'pyembed_store'::regnamespace AND am.amname IN ('hnsw', 'ivfflat')
  AND (%(store)s::text IS NULL OR t.relname = %(store)s)
ORDER BY t.relname, i.relname;

-- name: logged_query_vectors
SELECT query_vector FROM pyembed.query_log
WHERE collection_id = %(collection_id)s AND vector_dims(query_vector) = %(dims)s
ORDER BY id DESC LIMIT %(n)s;

-- name: sample_store_vectors
SELECT embedding FROM {table} WHERE embedding IS NOT NULL ORDER BY random() LIMIT %(n)s;

-- name: nearest_ctids
SELECT ctid::text FROM {table} WHERE embedding IS NOT NULL
ORDER BY embedding {op} CAST(%(q)s AS {vtype}) LIMIT 10;

-- name: nearest_ctids_binary
-- Binary storage: the nearest candidates by the Hamming index, re-ranked by the full vectors.
SELECT ctid::text FROM (
    SELECT ctid, embedding FROM {table} WHERE embedding IS NOT NULL
    ORDER BY {bits} <~> binary_quantize(CAST(%(q)s AS {vtype})) LIMIT %(candidates)s
) AS candidates
ORDER BY embedding {op} CAST(%(q)s AS {vtype}) LIMIT 10;

-- name: rename_index
ALTER INDEX {old} RENAME TO {new};

-- name: search
SELECT query_id, rank, pk, chunk, distance, similarity, rerank_score
FROM pyembed.search(%(collection)s, %(query)s::vector, %(k)s, %(filter)s, %(ef_search)s,
                    %(probes)s, %(log)s, %(query_text)s, %(rerank)s, %(reranker)s,
                    %(candidate_query)s::vector);

-- name: log_search
SELECT pyembed.log_search(%(collection)s, %(query)s::vector, %(keys)s, %(query_text)s, %(k)s,
                          %(params)s, %(latency_ms)s);

-- name: set_index_option
SELECT FROM pyembed.alter_collection(
    %(name)s, index_options => jsonb_build_object(%(option)s::text, %(value)s::int));

-- name: collection_index_settings
SELECT (SELECT string_agg(i.relname, ', ') FROM pg_index AS x
        JOIN pg_class AS i ON i.oid = x.indexrelid JOIN pg_am AS am ON am.oid = i.relam
        WHERE x.indrelid = to_regclass(format('%%I.%%I', 'pyembed_store',
                                              pyembed._store_name(c.name, c.active_version_id)))
          AND am.amname IN ('hnsw', 'ivfflat')),
       c.index_options
FROM pyembed.collections AS c WHERE c.name = %(name)s;

-- name: iterative_scan_local
-- For the rest of the transaction: an ANN scan goes on until LIMIT rows pass, as in pyembed.search.
SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL ivfflat.iterative_scan = relaxed_order;

-- name: exact_scan_only
-- For the rest of the transaction: no index scans, so a query measures the exact neighbours.
SET LOCAL enable_indexscan = off;
