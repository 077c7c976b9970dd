-- 0017 down: no reranked searches in the log, no reranked evaluations.
DELETE FROM pyembed.eval_runs WHERE mode = 'reranked';
ALTER TABLE pyembed.eval_runs
    DROP CONSTRAINT eval_runs_reranked_names_its_reranker,
    DROP COLUMN reranker_version_id,
    DROP CONSTRAINT eval_runs_mode_check,
    ADD CONSTRAINT eval_runs_mode_check CHECK (mode IN ('exact', 'deployed', 'n/a'));
DROP VIEW pyembed.query_results;
CREATE VIEW pyembed.query_results WITH (security_invoker = true) AS
SELECT q.id AS query_id, r.rank::integer AS rank, r.pk, r.chunk_seq, r.distance
FROM pyembed.query_log AS q,
     unnest(q.result_pks, q.result_chunk_seqs, q.result_distances)
         WITH ORDINALITY AS r (pk, chunk_seq, distance, rank);
COMMENT ON VIEW pyembed.query_results IS 'the rows each logged search returned, in order';
ALTER TABLE pyembed.query_log
    DROP CONSTRAINT query_log_rerank_scores_aligned,
    DROP COLUMN result_rerank_scores,
    DROP COLUMN reranker_version_id;
