-- Named queries of training: pairs from the log, runs and their metrics.
-- Python runs them by name (pyembed.db.queries.get); the names are unique across sql/queries/.

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

-- name: collection_pk_types
SELECT pk_types FROM pyembed.collections WHERE name = %(name)s;

-- name: row_labels
SELECT pk, label FROM pyembed.row_labels(%(collection)s, %(column)s);

-- name: training_run_summary_merge
UPDATE pyembed.training_runs SET data_summary = data_summary || %(extra)s WHERE id = %(id)s;

-- name: distill_store_sample
-- The teacher's chunks and vectors; a sample in a stable order past the limit.
SELECT chunk, embedding FROM pyembed.store_chunks(%(collection)s, %(version_id)s)
ORDER BY md5(pk::text || chunk) LIMIT %(limit)s;

-- name: distill_logged_queries
-- Queries the teacher embedded for searches, once each.
SELECT DISTINCT ON (q.query_text) q.query_text, q.query_vector
FROM pyembed.query_log AS q JOIN pyembed.collections AS c ON c.id = q.collection_id
WHERE c.name = %(collection)s AND q.model_version_id = %(version_id)s
  AND q.query_text IS NOT NULL AND q.query_vector IS NOT NULL
ORDER BY q.query_text, q.id DESC
LIMIT %(limit)s;
