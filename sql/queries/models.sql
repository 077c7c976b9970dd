-- Named queries of the registry, blue/green switches, what embeds a name, in-database embedding settings.
-- Python runs them by name (pyembed.db.queries.get); the names are unique across sql/queries/.

-- name: model_version
-- A reranker has no dimensions: 0 here, and loading.fetch_version refuses it as an embedder.
SELECT v.id, m.name AS model_name, m.task, v.version, coalesce(m.dimensions, 0) AS dimensions,
       m.max_seq_length, m.normalize,
       m.pooling, m.query_prefix, m.document_prefix, v.artifact_source, v.artifact_sha256, v.status,
       v.runtime, v.precision, v.parent_version_id, v.produced_by, v.endpoint
FROM pyembed.model_versions AS v
JOIN pyembed.models AS m ON m.id = v.model_id
WHERE v.id = %(id)s;

-- name: endpoint_origins
SELECT (SELECT value FROM pyembed.settings WHERE name = 'endpoint_origins');

-- name: endpoint_origins_set
-- Only the admin may write pyembed.settings: anyone else gets permission denied here.
INSERT INTO pyembed.settings AS s (name, value) VALUES ('endpoint_origins', %(value)s)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_by = current_user,
                                 updated_at = now();

-- name: model_artifact_parts
SELECT path, data FROM pyembed.model_artifacts WHERE version_id = %(id)s ORDER BY path, part;

-- name: model_family_upsert
-- The family row, created on first registration and locked for the rest of the transaction,
-- so two registrations of one model number their versions one after the other.
INSERT INTO pyembed.models AS m (name, task, base_model, dimensions, max_seq_length, pooling,
                                 normalize, query_prefix, document_prefix, description)
VALUES (%(name)s, %(task)s, %(base_model)s, %(dimensions)s, %(max_seq_length)s, %(pooling)s,
        %(normalize)s, %(query_prefix)s, %(document_prefix)s, %(description)s)
ON CONFLICT (name) DO UPDATE SET name = m.name
RETURNING id, dimensions, task;

-- name: model_version_insert
INSERT INTO pyembed.model_versions (model_id, version, parent_version_id, kind, status,
                                    artifact_source, runtime, precision, produced_by)
SELECT %(model_id)s, coalesce(max(version), 0) + 1, %(parent)s, %(kind)s, 'uploading',
       'database', %(runtime)s, %(precision)s, %(produced_by)s
FROM pyembed.model_versions WHERE model_id = %(model_id)s
RETURNING id, version;

-- name: endpoint_version_insert
-- Ready at once: there are no files to upload, the settings are the artifact.
INSERT INTO pyembed.model_versions (model_id, version, kind, status, artifact_source, runtime,
                                    endpoint, artifact_sha256, artifact_size, produced_by)
SELECT %(model_id)s, coalesce(max(version), 0) + 1, 'pretrained', 'ready', 'endpoint',
       'endpoint', %(endpoint)s, %(sha256)s, 0, %(produced_by)s
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
SELECT s.id, s.model, m.task, s.version, s.kind, s.status, s.parent_version_id, s.dimensions,
       v.runtime, v.precision, s.artifact_size, s.sha256, s.active_in, s.pending_in, s.created_at
FROM pyembed.model_version_status AS s JOIN pyembed.model_versions AS v USING (id)
JOIN pyembed.models AS m ON m.id = v.model_id
ORDER BY s.model, s.version;

-- name: model_version_show
SELECT s.*, m.task, v.runtime, v.precision
FROM pyembed.model_version_status AS s JOIN pyembed.model_versions AS v USING (id)
JOIN pyembed.models AS m ON m.id = v.model_id
WHERE s.id = %(id)s;

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
SELECT settings->>'gate_metric', settings->>'gate_mode', settings->>'gate_p_value'
FROM pyembed.collections WHERE name = %(name)s;

-- name: gate_comparison
-- The latest evaluation in the gate's mode (exact, or reranked by the same reranker) of the
-- candidate and of the active version on one eval set both were measured on: (eval set,
-- candidate value, active value, their run ids). Given set names, only those, in their order.
-- Otherwise sets the active model did not shape come first (imported or hand-made judgments),
-- then sets from the query log, then the held-out clicks of training runs (the active model
-- chose what could be clicked), newest first within each.
WITH c AS (SELECT id, active_version_id FROM pyembed.collections WHERE name = %(name)s),
latest AS (
    SELECT DISTINCT ON (r.model_version_id, r.eval_set_id, r.reranker_version_id)
           r.model_version_id, r.eval_set_id, r.reranker_version_id, m.value, r.id
    FROM pyembed.eval_runs AS r
    JOIN c ON r.collection_id = c.id
    JOIN pyembed.eval_metrics AS m ON m.run_id = r.id AND m.metric = %(metric)s AND m.k = %(k)s
    WHERE r.status = 'done' AND r.kind = 'retrieval' AND r.mode = %(mode)s
      AND r.model_version_id IN (%(candidate)s, c.active_version_id)
    ORDER BY r.model_version_id, r.eval_set_id, r.reranker_version_id, r.id DESC)
SELECT cand.eval_set_id, cand.value, act.value, cand.id, act.id
FROM latest AS cand
JOIN latest AS act ON act.eval_set_id = cand.eval_set_id
                  AND act.reranker_version_id IS NOT DISTINCT FROM cand.reranker_version_id
JOIN c ON act.model_version_id = c.active_version_id
JOIN pyembed.eval_sets AS s ON s.id = cand.eval_set_id
WHERE cand.model_version_id = %(candidate)s
  AND (cardinality(%(sets)s::text[]) = 0 OR s.name = ANY (%(sets)s::text[]))
ORDER BY array_position(%(sets)s::text[], s.name),
         CASE s.source WHEN 'held_out' THEN 2 WHEN 'query_log' THEN 1 ELSE 0 END,
         greatest(cand.id, act.id) DESC
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

-- name: embed_setting_set
INSERT INTO pyembed.settings AS s (name, value) VALUES (%(name)s, %(value)s)
ON CONFLICT (name) DO UPDATE
SET value = excluded.value, updated_by = current_user, updated_at = now();

-- name: embed_setting_clear
DELETE FROM pyembed.settings WHERE name = %(name)s;

-- name: embed_settings
SELECT name, value FROM pyembed.settings ORDER BY name;

-- name: converted_version
-- A ready conversion of a version at a precision: converting again returns it.
SELECT v.id, m.name, v.version, v.artifact_sha256, v.artifact_size,
       (SELECT count(DISTINCT a.path) FROM pyembed.model_artifacts AS a WHERE a.version_id = v.id)
FROM pyembed.model_versions AS v JOIN pyembed.models AS m ON m.id = v.model_id
WHERE v.parent_version_id = %(id)s AND v.kind = 'converted' AND v.precision = %(precision)s
  AND v.status = 'ready'
ORDER BY v.id DESC LIMIT 1;
