-- 0014: a search's results in its own query_log row. FROZEN once released.
-- A logged search wrote one query_log row and one query_results row per result: eleven heap
-- rows and fifteen index entries, each its own WAL record, which cost more than the log row
-- itself. The results become three aligned arrays of the log row (keys, chunk numbers,
-- distances, best first), and query_results a view that unnests them, so everything that reads
-- it reads the same rows; with security_invoker the log's row-level security decides what a
-- caller sees of both, and a search's results go with its row (no trigger needed).
ALTER TABLE pyembed.query_log
    ADD COLUMN result_pks jsonb[] NOT NULL DEFAULT '{}',
    ADD COLUMN result_chunk_seqs integer[] NOT NULL DEFAULT '{}',
    ADD COLUMN result_distances double precision[] NOT NULL DEFAULT '{}',
    -- What the results table's NOT NULL columns held: aligned arrays without holes.
    ADD CONSTRAINT query_log_results_aligned
        CHECK (cardinality(result_pks) = cardinality(result_chunk_seqs)
               AND cardinality(result_pks) = cardinality(result_distances)
               AND array_position(result_pks, NULL) IS NULL
               AND array_position(result_chunk_seqs, NULL) IS NULL
               AND array_position(result_distances, NULL) IS NULL);
UPDATE pyembed.query_log AS q
SET result_pks = r.pks, result_chunk_seqs = r.chunk_seqs, result_distances = r.distances
FROM (SELECT query_id, array_agg(pk ORDER BY rank) AS pks,
             array_agg(chunk_seq ORDER BY rank) AS chunk_seqs,
             array_agg(distance ORDER BY rank) AS distances
      FROM pyembed.query_results GROUP BY query_id) AS r
WHERE r.query_id = q.id;

DROP TRIGGER query_log_deleted ON pyembed.query_log;
DROP FUNCTION pyembed._query_log_deleted();
DROP TABLE pyembed.query_results;
CREATE VIEW pyembed.query_results WITH (security_invoker = true) AS
SELECT q.id AS query_id, r.rank::integer AS rank, r.pk, r.chunk_seq, r.distance
FROM pyembed.query_log AS q,
     unnest(q.result_pks, q.result_chunk_seqs, q.result_distances)
         WITH ORDINALITY AS r (pk, chunk_seq, distance, rank);
COMMENT ON VIEW pyembed.query_results IS 'the rows each logged search returned, in order';
