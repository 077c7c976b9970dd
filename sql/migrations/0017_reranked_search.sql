-- 0017: reranked searches in the log, reranked pipelines in evaluation. FROZEN once released.
-- A search reranked by a cross-encoder logs the order it returned, the reranker's version and
-- its score of each result beside the vector distance (NULL for searches not reranked).
ALTER TABLE pyembed.query_log
    ADD COLUMN reranker_version_id bigint REFERENCES pyembed.model_versions ON DELETE SET NULL,
    ADD COLUMN result_rerank_scores double precision[],
    ADD CONSTRAINT query_log_rerank_scores_aligned
        CHECK (result_rerank_scores IS NULL
               OR (cardinality(result_rerank_scores) = cardinality(result_pks)
                   AND array_position(result_rerank_scores, NULL) IS NULL));
COMMENT ON COLUMN pyembed.query_log.result_rerank_scores IS
    'the reranker''s score of each result, aligned with result_pks; NULL when not reranked';
CREATE OR REPLACE VIEW pyembed.query_results WITH (security_invoker = true) AS
SELECT q.id AS query_id, r.rank::integer AS rank, r.pk, r.chunk_seq, r.distance, r.rerank_score
FROM pyembed.query_log AS q,
     unnest(q.result_pks, q.result_chunk_seqs, q.result_distances, q.result_rerank_scores)
         WITH ORDINALITY AS r (pk, chunk_seq, distance, rerank_score, rank);

-- 'reranked': the version's exact top candidates, reordered by a reranker, which the run names.
ALTER TABLE pyembed.eval_runs
    DROP CONSTRAINT eval_runs_mode_check,
    ADD CONSTRAINT eval_runs_mode_check
        CHECK (mode IN ('exact', 'deployed', 'reranked', 'n/a')),
    ADD COLUMN reranker_version_id bigint REFERENCES pyembed.model_versions ON DELETE RESTRICT,
    ADD CONSTRAINT eval_runs_reranked_names_its_reranker
        CHECK ((mode = 'reranked') = (reranker_version_id IS NOT NULL));
COMMENT ON COLUMN pyembed.eval_runs.reranker_version_id IS
    'the reranker of a reranked run (mode reranked), NULL otherwise';
