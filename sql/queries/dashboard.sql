-- Named queries of the live dashboard (pyembed dashboard): what its role may see, as JSON rows.

-- name: dashboard_collections
SELECT collection, source, source_rows, embedded_rows, skipped_rows, pending, retrying, failed,
       extract(epoch FROM oldest_pending_age) AS oldest_pending_seconds,
       active_model_version, pending_model_version
FROM pyembed.collection_status ORDER BY collection;

-- name: dashboard_workers
-- Live workers, and the ten that stopped last.
SELECT id, hostname, state, alive, extract(epoch FROM since_heartbeat) AS since_heartbeat_seconds,
       started_at, rows_embedded, failures, last_error
FROM (SELECT w.*, row_number() OVER (PARTITION BY w.alive ORDER BY w.started_at DESC) AS n
      FROM pyembed.worker_status AS w) AS w
WHERE alive OR n <= 10
ORDER BY alive DESC, started_at DESC;

-- name: dashboard_versions
-- Each version a collection served or measured, with its latest exact retrieval evaluation.
SELECT c.name AS collection, v.id AS version_id, m.name || ' v' || v.version AS model_version,
       v.kind, v.parent_version_id, v.created_at,
       v.id = c.active_version_id AS active, v.id IS NOT DISTINCT FROM c.pending_version_id AS pending,
       latest.eval_set, latest.finished_at AS evaluated_at,
       (SELECT jsonb_object_agg(CASE WHEN em.k > 0 THEN em.metric || '@' || em.k ELSE em.metric END,
                                em.value)
        FROM pyembed.eval_metrics AS em WHERE em.run_id = latest.id) AS metrics
FROM pyembed.collections AS c
JOIN pyembed.model_versions AS v ON v.model_id = c.model_id
JOIN pyembed.models AS m ON m.id = v.model_id
LEFT JOIN LATERAL (
    SELECT r.id, s.name AS eval_set, r.finished_at
    FROM pyembed.eval_runs AS r LEFT JOIN pyembed.eval_sets AS s ON s.id = r.eval_set_id
    WHERE r.collection_id = c.id AND r.model_version_id = v.id AND r.status = 'done'
      AND r.kind = 'retrieval' AND r.mode = 'exact'
    ORDER BY r.id DESC LIMIT 1) AS latest ON true
WHERE v.id IN (c.active_version_id, c.pending_version_id) OR latest.id IS NOT NULL
   OR EXISTS (SELECT FROM pyembed.deployments AS d
              WHERE d.collection_id = c.id AND d.to_version_id = v.id)
ORDER BY c.name, v.id;

-- name: dashboard_deployments
SELECT c.name AS collection, d.id, d.created_at, d.action, d.from_version_id, d.to_version_id,
       d.reason, d.performed_by, (d.metrics->>'candidate')::float8 AS candidate,
       (d.metrics->>'active')::float8 AS active_value, d.metrics->>'metric' AS metric,
       (d.metrics->>'p_value')::float8 AS p_value
FROM pyembed.deployments AS d JOIN pyembed.collections AS c ON c.id = d.collection_id
ORDER BY d.id DESC LIMIT 100;

-- name: dashboard_training
SELECT c.name AS collection, r.id, r.status, r.loss, r.triggered_by, r.outcome, r.outcome_reason,
       r.base_version_id, r.result_version_id, (r.data_summary->>'pairs')::integer AS pairs,
       coalesce(r.data_summary->>'task', 'embedding') AS task, r.started_at, r.finished_at,
       extract(epoch FROM coalesce(r.finished_at, now()) - r.started_at) AS seconds,
       r.peak_memory_bytes, r.error,
       (SELECT m.loss FROM pyembed.training_metrics AS m
        WHERE m.run_id = r.id AND m.loss IS NOT NULL ORDER BY m.step DESC LIMIT 1) AS last_loss,
       (SELECT max(m.step) FROM pyembed.training_metrics AS m WHERE m.run_id = r.id) AS steps
FROM pyembed.training_runs AS r JOIN pyembed.collections AS c ON c.id = r.collection_id
ORDER BY r.id DESC LIMIT 30;

-- name: dashboard_learning
SELECT collection, enabled, min_feedback, extract(epoch FROM min_interval) AS min_interval_seconds,
       after_training, new_feedback, due, next_run_not_before, last_run_id, last_outcome
FROM pyembed.learning_status ORDER BY collection;

-- name: dashboard_canaries
-- Running canaries and the last ended ones, with their interleaving score.
SELECT collection, canary_id, candidate_version_id, baseline_version_id, mode, started_at,
       ended_at, decision, decision_reason, searches, judged, candidate_wins, baseline_wins,
       ties, candidate_mrr, baseline_mrr, p_value, verdict, min_searches
FROM pyembed.canary_status ORDER BY canary_id DESC LIMIT 20;

-- name: dashboard_online
SELECT collection, model_version_id, searches, clicks_per_search, mrr, no_click_share,
       last_search_at
FROM pyembed.online_metrics ORDER BY collection, model_version_id;
