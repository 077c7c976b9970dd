-- Named queries used by pyembed's Python code. Each starts with a `-- name: NAME` line and
-- runs up to the next one; pyembed.queries loads them by name.

-- name: extension_installed
SELECT 1 FROM pg_extension WHERE extname = %(name)s;

-- name: extension_available_version
SELECT coalesce(installed_version, default_version) AS version
FROM pg_available_extensions
WHERE name = %(name)s;

-- name: database_exists
SELECT 1 FROM pg_database WHERE datname = %(name)s;

-- name: server_overview
SELECT current_setting('server_version') AS server_version,
       current_database() AS database,
       current_user AS "user",
       (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector_version,
       (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'vector') AS pgvector_schema,
       pg_is_in_recovery() AS in_recovery;

-- name: migration_lock
SELECT pg_advisory_xact_lock(:key);

-- name: model_version
SELECT v.id, m.name AS model_name, v.version, m.dimensions, m.max_seq_length, m.normalize,
       m.query_prefix, m.document_prefix, v.artifact_source, v.artifact_sha256, v.status,
       v.produced_by
FROM pyembed.model_versions AS v
JOIN pyembed.models AS m ON m.id = v.model_id
WHERE v.id = %(id)s;

-- name: model_artifact_parts
SELECT path, data FROM pyembed.model_artifacts WHERE version_id = %(id)s ORDER BY path, part;

-- name: claim_batch
-- Due items, fresh writes before backfills, oldest first; leased to this worker.
WITH next AS (
    SELECT q.id FROM pyembed.queue AS q
    WHERE q.next_attempt_at <= clock_timestamp()
      AND (q.lease_expires_at IS NULL OR q.lease_expires_at < clock_timestamp())
      AND q.attempts < %(max_attempts)s
      AND (%(collections)s::text[] IS NULL OR q.collection_id IN (
              SELECT c.id FROM pyembed.collections AS c WHERE c.name = ANY (%(collections)s)))
    ORDER BY q.priority, q.next_attempt_at, q.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE pyembed.queue AS q
SET lease_owner = %(worker)s,
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_seconds)s),
    attempts = q.attempts + 1
FROM next
WHERE q.id = next.id
RETURNING q.id, q.collection_id, q.pk, q.model_version_id, q.revision, q.attempts, q.operation;

-- name: bury_abandoned
-- Items whose lease expired max_attempts times: a worker died or hung on them every time.
WITH dead AS (
    DELETE FROM pyembed.queue AS q
    WHERE q.attempts >= %(max_attempts)s AND q.lease_expires_at < clock_timestamp()
    RETURNING q.*
)
INSERT INTO pyembed.failed_items (collection_id, pk, model_version_id, operation, attempts,
                                  last_error, first_enqueued_at)
SELECT collection_id, pk, model_version_id, operation, attempts,
       coalesce(last_error, '') || ' (lease expired ' || attempts
       || ' times: the worker died or hung while embedding this row)', enqueued_at
FROM dead;

-- name: lock_claimed
-- In the write transaction: the claimed items still leased to this worker, locked, with their
-- revision (a higher one than claimed means the row changed while it was being embedded).
SELECT id, revision FROM pyembed.queue
WHERE id = ANY (%(ids)s) AND lease_owner = %(worker)s
FOR UPDATE;

-- name: finish_items
DELETE FROM pyembed.queue WHERE id = ANY (%(ids)s) AND lease_owner = %(worker)s;

-- name: release_items
UPDATE pyembed.queue SET lease_owner = NULL, lease_expires_at = NULL
WHERE id = ANY (%(ids)s) AND lease_owner = %(worker)s;

-- name: retry_items
UPDATE pyembed.queue AS q
SET lease_owner = NULL, lease_expires_at = NULL, last_error = f.error,
    next_attempt_at = clock_timestamp()
                      + make_interval(secs => least(%(backoff_seconds)s * 2 ^ (q.attempts - 1), 3600))
FROM unnest(%(ids)s::bigint[], %(errors)s::text[]) AS f(id, error)
WHERE q.id = f.id AND q.lease_owner = %(worker)s;

-- name: bury_items
WITH dead AS (
    DELETE FROM pyembed.queue AS q
    USING unnest(%(ids)s::bigint[], %(errors)s::text[]) AS f(id, error)
    WHERE q.id = f.id AND q.lease_owner = %(worker)s
    RETURNING q.*, f.error
)
INSERT INTO pyembed.failed_items (collection_id, pk, model_version_id, operation, attempts,
                                  last_error, first_enqueued_at)
SELECT collection_id, pk, model_version_id, operation, attempts, error, enqueued_at FROM dead;

-- name: extend_leases
UPDATE pyembed.queue
SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_seconds)s)
WHERE lease_owner = %(worker)s;

-- name: collection_source_and_role
SELECT current_user::text, format('%%I.%%I', source_schema, source_table)
FROM pyembed.collections WHERE name = %(name)s;

-- name: collection_by_id
SELECT id, name, chunk_tokens, chunk_overlap, active_version_id, pending_version_id
FROM pyembed.collections WHERE id = %(id)s;

-- name: create_staging
CREATE TEMP TABLE IF NOT EXISTS pyembed_chunks (
    version_id bigint NOT NULL,
    pk jsonb NOT NULL,
    chunk_seq integer NOT NULL,
    chunk text NOT NULL,
    embedding vector,
    content_hash bytea NOT NULL
) ON COMMIT DELETE ROWS;

-- name: copy_staging
COPY pyembed_chunks (version_id, pk, chunk_seq, chunk, embedding, content_hash)
FROM STDIN (FORMAT BINARY);

-- name: source_rows
SELECT pk, body, row_exists FROM pyembed.source_rows(%(collection)s, %(keys)s);

-- name: stored_hashes
SELECT pk, content_hash FROM pyembed.stored_hashes(%(collection)s, %(version_id)s, %(keys)s);

-- name: apply_chunks
SELECT pyembed.apply_chunks(%(collection)s, %(version_id)s, %(keys)s);

-- name: register_worker
INSERT INTO pyembed.workers (id, hostname, pid, collections, details)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(collections)s, %(details)s)
ON CONFLICT (id) DO UPDATE SET state = 'running', heartbeat_at = now(), stopped_at = NULL;

-- name: worker_heartbeat
UPDATE pyembed.workers
SET heartbeat_at = now(), state = %(state)s, rows_embedded = %(rows)s,
    chunks_written = %(chunks)s, batches = %(batches)s, failures = %(failures)s,
    last_error = %(last_error)s,
    stopped_at = CASE WHEN %(state)s = 'stopped' THEN now() END
WHERE id = %(id)s;

-- name: pending_count
SELECT count(*) FROM pyembed.queue AS q
WHERE %(collections)s::text[] IS NULL OR q.collection_id IN (
    SELECT c.id FROM pyembed.collections AS c WHERE c.name = ANY (%(collections)s));

-- name: failed_list
SELECT f.id, c.name AS collection, f.pk, f.attempts, f.last_error, f.failed_at
FROM pyembed.failed_items AS f JOIN pyembed.collections AS c ON c.id = f.collection_id
WHERE %(collection)s::text IS NULL OR c.name = %(collection)s
ORDER BY f.failed_at DESC, f.id DESC
LIMIT %(limit)s;

-- name: failed_retry
-- Move dead letters back into the queue (all of a collection, or the given ids).
WITH back AS (
    DELETE FROM pyembed.failed_items AS f
    USING pyembed.collections AS c
    WHERE c.id = f.collection_id
      AND (%(collection)s::text IS NULL OR c.name = %(collection)s)
      AND (%(ids)s::bigint[] IS NULL OR f.id = ANY (%(ids)s))
    RETURNING f.*
)
INSERT INTO pyembed.queue AS q (collection_id, pk, model_version_id, operation)
SELECT DISTINCT ON (collection_id, coalesce(model_version_id, 0), pk)
       collection_id, pk, model_version_id, operation
FROM back
ON CONFLICT (collection_id, coalesce(model_version_id, 0), pk) DO UPDATE
SET attempts = 0, next_attempt_at = clock_timestamp(), last_error = NULL,
    revision = q.revision + 1;

-- name: set_local_search_path
SELECT set_config('search_path', %(path)s, true);

-- name: extension_schema
SELECT quote_ident(n.nspname)
FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
WHERE e.extname = %(name)s;

-- name: collection_store
-- The store of a collection's version (default: the active one); its model gives the dimension.
SELECT c.id, c.name, c.distance, v.id AS version_id, m.dimensions,
       pyembed._store_name(c.name, v.id) AS store, pyembed._vector_kind(m.dimensions) AS vector_kind,
       (pyembed._distance(c.distance)).operator, pyembed._opclass(c.distance, m.dimensions) AS opclass
FROM pyembed.collections AS c
JOIN pyembed.model_versions AS v ON v.id = coalesce(%(version_id)s::bigint, c.active_version_id)
JOIN pyembed.models AS m ON m.id = v.model_id
WHERE c.name = %(name)s;

-- name: create_hnsw_index
CREATE INDEX CONCURRENTLY {index} ON {table} USING hnsw (embedding {opclass})
WITH (m = {m}, ef_construction = {ef_construction});

-- name: create_ivfflat_index
CREATE INDEX CONCURRENTLY {index} ON {table} USING ivfflat (embedding {opclass})
WITH (lists = {lists});

-- name: drop_index
DROP INDEX CONCURRENTLY IF EXISTS {index};

-- name: max_results
SELECT pyembed.max_results();

-- name: acts_as_owner
SELECT to_regrole('pyembed_owner') IS NULL OR pg_has_role(current_user, 'pyembed_owner', 'USAGE');

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
SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total
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

-- name: rename_index
ALTER INDEX {old} RENAME TO {new};

-- name: search
SELECT query_id, rank, pk, chunk, distance, similarity
FROM pyembed.search(%(collection)s, %(query)s::vector, %(k)s, %(filter)s, %(ef_search)s,
                    %(probes)s, %(log)s, %(query_text)s);

-- name: log_search
SELECT pyembed.log_search(%(collection)s, %(query)s::vector, %(keys)s, %(query_text)s, %(k)s,
                          %(params)s, %(latency_ms)s);

-- name: in_recovery
SELECT pg_is_in_recovery();

-- name: set_index_option
SELECT FROM pyembed.alter_collection(
    %(name)s, index_options => jsonb_build_object(%(option)s::text, %(value)s::int));

-- name: auto_index_due
SELECT id, name, method, options FROM pyembed.auto_index_due(%(ids)s::bigint[]);

-- name: try_collection_lock
SELECT pg_try_advisory_lock(%(key)s, %(collection_id)s);

-- name: collection_unlock
SELECT pg_advisory_unlock(%(key)s, %(collection_id)s);

-- name: schema_exists
SELECT 1 FROM pg_namespace WHERE nspname = %(name)s;

-- name: function_overloads
-- Every overload of a function of schema pyembed, as a signature DROP FUNCTION accepts
-- (regprocedure output quotes the names as needed).
SELECT p.oid::regprocedure::text FROM pg_proc AS p
WHERE p.pronamespace = 'pyembed'::regnamespace AND p.proname = %(name)s;

-- name: model_family_upsert
-- The family row, created on first registration and locked for the rest of the transaction,
-- so two registrations of one model number their versions one after the other.
INSERT INTO pyembed.models AS m (name, base_model, dimensions, max_seq_length, pooling, normalize,
                                 query_prefix, document_prefix, description)
VALUES (%(name)s, %(base_model)s, %(dimensions)s, %(max_seq_length)s, %(pooling)s, %(normalize)s,
        %(query_prefix)s, %(document_prefix)s, %(description)s)
ON CONFLICT (name) DO UPDATE SET name = m.name
RETURNING id, dimensions;

-- name: model_version_insert
INSERT INTO pyembed.model_versions (model_id, version, parent_version_id, kind, status,
                                    artifact_source, produced_by)
SELECT %(model_id)s, coalesce(max(version), 0) + 1, %(parent)s, %(kind)s, 'uploading',
       'database', %(produced_by)s
FROM pyembed.model_versions WHERE model_id = %(model_id)s
RETURNING id, version;

-- name: copy_model_artifacts
COPY pyembed.model_artifacts (version_id, path, part, data) FROM STDIN (FORMAT BINARY);

-- name: model_version_ready
UPDATE pyembed.model_versions
SET status = 'ready', artifact_sha256 = %(sha256)s, artifact_size = %(size)s
WHERE id = %(id)s;

-- name: model_version_by_name
SELECT v.id FROM pyembed.model_versions AS v JOIN pyembed.models AS m ON m.id = v.model_id
WHERE m.name = %(name)s AND (v.version = %(version)s OR (%(version)s::int IS NULL AND v.status = 'ready'))
ORDER BY v.version DESC LIMIT 1;

-- name: model_versions_list
SELECT id, model, version, kind, status, parent_version_id, dimensions, artifact_size, sha256,
       active_in, pending_in, created_at
FROM pyembed.model_version_status ORDER BY model, version;

-- name: model_version_show
SELECT * FROM pyembed.model_version_status WHERE id = %(id)s;

-- name: model_version_files
SELECT path, sum(length(data)) AS bytes, count(*) AS parts
FROM pyembed.model_artifacts WHERE version_id = %(id)s GROUP BY path ORDER BY path;

-- name: model_version_deployments
SELECT d.id, c.name AS collection, d.action, d.from_version_id, d.to_version_id, d.reason,
       d.metrics, d.created_at
FROM pyembed.deployments AS d JOIN pyembed.collections AS c ON c.id = d.collection_id
WHERE %(id)s IN (d.from_version_id, d.to_version_id)
ORDER BY d.id;

-- name: retire_version
SELECT pyembed.retire_version(%(id)s, %(reason)s);

-- name: collection_gate_metric
SELECT settings->>'gate_metric' FROM pyembed.collections WHERE name = %(name)s;

-- name: gate_comparison
-- The latest exact-search evaluation of the candidate and of the active version on the newest
-- eval set both were measured on: (eval set, candidate value, active value).
WITH c AS (SELECT id, active_version_id FROM pyembed.collections WHERE name = %(name)s),
latest AS (
    SELECT DISTINCT ON (r.model_version_id, r.eval_set_id)
           r.model_version_id, r.eval_set_id, m.value, r.id
    FROM pyembed.eval_runs AS r
    JOIN c ON r.collection_id = c.id
    JOIN pyembed.eval_metrics AS m ON m.run_id = r.id AND m.metric = %(metric)s AND m.k = %(k)s
    WHERE r.status = 'done' AND r.kind = 'retrieval' AND r.mode = 'exact'
      AND r.model_version_id IN (%(candidate)s, c.active_version_id)
    ORDER BY r.model_version_id, r.eval_set_id, r.id DESC)
SELECT cand.eval_set_id, cand.value, act.value
FROM latest AS cand
JOIN latest AS act ON act.eval_set_id = cand.eval_set_id
JOIN c ON act.model_version_id = c.active_version_id
WHERE cand.model_version_id = %(candidate)s
ORDER BY greatest(cand.id, act.id) DESC
LIMIT 1;

-- name: collection_versions
SELECT active_version_id, pending_version_id FROM pyembed.collections WHERE name = %(name)s;

-- name: begin_switch
SELECT pyembed.begin_switch(%(name)s, %(version)s, %(allow)s, %(reason)s);

-- name: switch_backlog
SELECT pyembed.switch_backlog(%(name)s);

-- name: finish_switch
SELECT pyembed.finish_switch(%(name)s, %(reason)s, %(metrics)s);

-- name: abort_switch
SELECT pyembed.abort_switch(%(name)s, %(reason)s);

-- name: rollback
SELECT pyembed.rollback(%(name)s, %(reason)s);

-- name: store_embeddings
SELECT pk, embedding FROM pyembed.store_embeddings(%(collection)s, %(version_id)s);

-- name: source_texts
SELECT pk, body FROM pyembed.source_texts(%(collection)s);

-- name: eval_set_find
-- An eval set of the collection by name, or its newest one.
SELECT s.id, s.name FROM pyembed.eval_sets AS s JOIN pyembed.collections AS c ON c.id = s.collection_id
WHERE c.name = %(collection)s AND (%(name)s::text IS NULL OR s.name = %(name)s)
ORDER BY s.id DESC LIMIT 1;

-- name: eval_set_judgments
SELECT q.id, q.query_text, j.pk, j.grade
FROM pyembed.eval_queries AS q LEFT JOIN pyembed.eval_judgments AS j ON j.eval_query_id = q.id
WHERE q.eval_set_id = %(id)s
ORDER BY q.id;

-- name: eval_set_create
INSERT INTO pyembed.eval_sets (collection_id, name, source, description, details)
SELECT c.id, %(name)s, %(source)s, %(description)s, %(details)s
FROM pyembed.collections AS c WHERE c.name = %(collection)s
RETURNING id;

-- name: eval_set_fill
-- The queries of a new eval set and their judgments (the caller merged duplicates).
WITH added AS (
    INSERT INTO pyembed.eval_queries (eval_set_id, query_text)
    SELECT %(set_id)s, t FROM unnest(%(texts)s::text[]) AS t
    RETURNING id, query_text)
INSERT INTO pyembed.eval_judgments (eval_query_id, pk, grade)
SELECT a.id, r.pk, r.grade
FROM added AS a
JOIN jsonb_to_recordset(%(judgments)s) AS r(query_text text, pk jsonb, grade real) USING (query_text);

-- name: eval_run_record
INSERT INTO pyembed.eval_runs (collection_id, model_version_id, eval_set_id, kind, mode, params,
                               status, error, started_at, finished_at)
SELECT c.id, %(version_id)s, %(set_id)s, %(kind)s, %(mode)s, %(params)s, 'done', NULL,
       %(started_at)s, now()
FROM pyembed.collections AS c WHERE c.name = %(collection)s
RETURNING id;

-- name: eval_metric_add
INSERT INTO pyembed.eval_metrics (run_id, metric, k, value) VALUES (%(run_id)s, %(metric)s, %(k)s, %(value)s);

-- name: collection_eval_info
SELECT active_version_id, distance, chunk_tokens, chunk_overlap
FROM pyembed.collections WHERE name = %(name)s;

-- name: search_ranked
SELECT pk FROM pyembed.search(%(collection)s, %(query)s::vector, %(k)s, log => false);

-- name: collection_index_settings
SELECT (SELECT string_agg(i.relname, ', ') FROM pg_index AS x
        JOIN pg_class AS i ON i.oid = x.indexrelid JOIN pg_am AS am ON am.oid = i.relam
        WHERE x.indrelid = to_regclass(format('%%I.%%I', 'pyembed_store',
                                              pyembed._store_name(c.name, c.active_version_id)))
          AND am.amname IN ('hnsw', 'ivfflat')),
       c.index_options
FROM pyembed.collections AS c WHERE c.name = %(name)s;

-- name: feedback_for_training
SELECT q.id, q.query_text, f.pk, f.weight
FROM pyembed.feedback AS f
JOIN pyembed.query_log AS q ON q.id = f.query_id
JOIN pyembed.collections AS c ON c.id = q.collection_id
WHERE c.name = %(collection)s AND q.query_text IS NOT NULL AND btrim(q.query_text) <> ''
ORDER BY f.id;

-- name: results_for_training
SELECT query_id, rank, pk FROM pyembed.query_results WHERE query_id = ANY (%(ids)s::bigint[]);

-- name: training_run_start
INSERT INTO pyembed.training_runs (collection_id, base_version_id, loss, data_summary, params,
                                   eval_set_id, checkpoint_dir)
SELECT c.id, %(base)s, %(loss)s, %(summary)s, %(params)s, %(eval_set_id)s, %(checkpoint_dir)s
FROM pyembed.collections AS c WHERE c.name = %(collection)s
RETURNING id;

-- name: training_run_get
SELECT r.id, c.name AS collection, r.base_version_id, r.status, r.loss, r.params, r.data_summary,
       r.eval_set_id, r.checkpoint_dir, r.result_version_id
FROM pyembed.training_runs AS r JOIN pyembed.collections AS c ON c.id = r.collection_id
WHERE r.id = %(id)s;

-- name: training_run_finish
UPDATE pyembed.training_runs
SET status = %(status)s, result_version_id = %(version_id)s, error = %(error)s,
    peak_memory_bytes = %(peak)s, finished_at = now()
WHERE id = %(id)s;

-- name: training_run_status
UPDATE pyembed.training_runs SET status = %(status)s, error = %(error)s WHERE id = %(id)s;

-- name: training_metric_add
INSERT INTO pyembed.training_metrics (run_id, step, epoch, loss, learning_rate)
VALUES (%(run_id)s, %(step)s, %(epoch)s, %(loss)s, %(lr)s)
ON CONFLICT (run_id, step) DO UPDATE
SET epoch = excluded.epoch, loss = coalesce(excluded.loss, pyembed.training_metrics.loss),
    learning_rate = coalesce(excluded.learning_rate, pyembed.training_metrics.learning_rate),
    recorded_at = now();

-- name: collection_model
SELECT c.active_version_id, m.name, c.chunk_tokens, c.chunk_overlap
FROM pyembed.collections AS c JOIN pyembed.models AS m ON m.id = c.model_id
WHERE c.name = %(name)s;

-- name: training_run_dir
UPDATE pyembed.training_runs SET checkpoint_dir = %(dir)s WHERE id = %(id)s;

-- name: eval_set_name
SELECT name FROM pyembed.eval_sets WHERE id = %(id)s;

-- name: collection_pk_types
SELECT pk_types FROM pyembed.collections WHERE name = %(name)s;

-- name: row_labels
SELECT pk, label FROM pyembed.row_labels(%(collection)s, %(column)s);

-- name: report_collections
SELECT collection, source, source_rows, embedded_rows, skipped_rows, chunks, pending, retrying,
       failed, oldest_pending_age, active_model_version, pending_model_version
FROM pyembed.collection_status
WHERE %(collection)s::text IS NULL OR collection = %(collection)s
ORDER BY collection;

-- name: report_metrics
SELECT collection, model_version, eval_set, mode, label, value, finished_at
FROM pyembed.eval_latest
WHERE kind = 'retrieval' AND label IN ('ndcg@10', 'mrr@10', 'recall@10')
  AND (%(collection)s::text IS NULL OR collection = %(collection)s)
ORDER BY collection, eval_set, label, model_version, mode;

-- name: report_training
SELECT r.id AS run_id, c.name AS collection, r.loss AS loss_name, m.step, m.loss
FROM pyembed.training_runs AS r
JOIN pyembed.collections AS c ON c.id = r.collection_id
JOIN pyembed.training_metrics AS m ON m.run_id = r.id
WHERE %(collection)s::text IS NULL OR c.name = %(collection)s
ORDER BY r.id, m.step;

-- name: report_tuning
SELECT b.index_name, b.tuning
FROM pyembed.index_builds AS b JOIN pyembed.collections AS c ON c.id = b.collection_id
WHERE b.tuning IS NOT NULL AND jsonb_array_length(b.tuning) > 0
  AND (%(collection)s::text IS NULL OR c.name = %(collection)s)
ORDER BY b.id DESC LIMIT 4;

-- name: report_workers
SELECT id, hostname, state, alive, since_heartbeat, rows_embedded, chunks_written, failures,
       last_error
FROM pyembed.worker_status  -- workers serve every collection: the report lists them all
ORDER BY started_at DESC LIMIT 20;

-- name: report_deployments
SELECT d.created_at, c.name AS collection, d.action, d.from_version_id, d.to_version_id,
       d.reason, d.metrics
FROM pyembed.deployments AS d JOIN pyembed.collections AS c ON c.id = d.collection_id
WHERE %(collection)s::text IS NULL OR c.name = %(collection)s
ORDER BY d.id DESC LIMIT 50;

-- name: embedding_version
SELECT pyembed.embedding_version(%(name)s);

-- name: served_models
-- What `model` may name: collections (their active version), models, MODEL@N.
SELECT c.name, c.created_at FROM pyembed.collections AS c WHERE c.active_version_id IS NOT NULL
UNION ALL
SELECT m.name, m.created_at FROM pyembed.models AS m
WHERE EXISTS (SELECT FROM pyembed.model_versions AS v WHERE v.model_id = m.id AND v.status = 'ready')
UNION ALL
SELECT m.name || '@' || v.version, v.created_at
FROM pyembed.model_versions AS v JOIN pyembed.models AS m ON m.id = v.model_id
WHERE v.status = 'ready'
ORDER BY 1;

-- name: downgrade_blockers
-- Application objects that depend on pyembed's own (views over its tables, functions taking its
-- row types, foreign keys to it, triggers or defaults calling its functions): removing pyembed
-- would drop them with it, so a downgrade that removes pyembed refuses and names them.
WITH ours AS (
    SELECT 'pg_class'::regclass AS classid, cl.oid FROM pg_class AS cl
    WHERE cl.relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pyembed', 'pyembed_store'))
    UNION ALL
    SELECT 'pg_proc'::regclass, p.oid FROM pg_proc AS p
    WHERE p.pronamespace IN (SELECT oid FROM pg_namespace WHERE nspname = 'pyembed')
    UNION ALL
    SELECT 'pg_type'::regclass, t.oid FROM pg_type AS t
    WHERE t.typnamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pyembed', 'pyembed_store'))
),
dependents AS (
    SELECT DISTINCT d.classid, d.objid,
           CASE d.classid
               WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid)
               WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = d.objid)
               WHEN 'pg_constraint'::regclass THEN (SELECT conrelid FROM pg_constraint WHERE oid = d.objid)
               WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = d.objid)
               WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = d.objid)
               WHEN 'pg_class'::regclass THEN d.objid
           END AS relid,
           CASE d.classid WHEN 'pg_proc'::regclass
               THEN (SELECT pronamespace FROM pg_proc WHERE oid = d.objid) END AS proc_namespace
    FROM pg_depend AS d JOIN ours ON ours.classid = d.refclassid AND ours.oid = d.refobjid
    WHERE d.deptype IN ('n', 'a')
)
SELECT pg_describe_object(classid, objid, 0)
FROM dependents
WHERE coalesce((SELECT relnamespace FROM pg_class WHERE oid = relid), proc_namespace)
      NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pyembed', 'pyembed_store'))
  -- pyembed's own capture triggers on source tables go with their collections.
  AND NOT (classid = 'pg_trigger'::regclass AND EXISTS (
      SELECT FROM pg_trigger AS t WHERE t.oid = objid
        AND t.tgfoid IN (SELECT p.oid FROM pg_proc AS p
                         WHERE p.pronamespace = 'pyembed'::regnamespace
                           AND p.proname IN ('_capture_changes', '_capture_truncate'))))
ORDER BY 1;

-- name: drop_all_collections
-- Before a downgrade removes collections: their triggers leave the application's tables
-- (its tables and rows stay), their stores go.
DO $$
BEGIN
    IF to_regprocedure('pyembed.drop_collection(text,boolean)') IS NOT NULL THEN
        PERFORM pyembed.drop_collection(name) FROM pyembed.collections ORDER BY id;
    END IF;
END
$$;

-- name: embed_setting_set
INSERT INTO pyembed.settings AS s (name, value) VALUES (%(name)s, %(value)s)
ON CONFLICT (name) DO UPDATE
SET value = excluded.value, updated_by = current_user, updated_at = now();

-- name: embed_setting_clear
DELETE FROM pyembed.settings WHERE name = %(name)s;

-- name: embed_settings
SELECT name, value FROM pyembed.settings ORDER BY name;
