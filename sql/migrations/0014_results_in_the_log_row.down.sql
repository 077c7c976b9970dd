-- Undo 0014: query_results is a table again, filled from the arrays, and a trigger deletes a
-- search's results with it (as 0013 made it).
DROP VIEW pyembed.query_results;
CREATE TABLE pyembed.query_results (
    query_id  bigint NOT NULL,
    rank      integer NOT NULL CHECK (rank > 0),
    pk        jsonb NOT NULL CHECK (jsonb_typeof(pk) = 'array'),
    chunk_seq integer NOT NULL,
    distance  double precision NOT NULL,
    PRIMARY KEY (query_id, rank)
);
COMMENT ON TABLE pyembed.query_results IS 'the rows each logged search returned, in order';
ALTER TABLE pyembed.query_results ENABLE ROW LEVEL SECURITY;
INSERT INTO pyembed.query_results (query_id, rank, pk, chunk_seq, distance)
SELECT q.id, r.rank, r.pk, r.chunk_seq, r.distance
FROM pyembed.query_log AS q,
     unnest(q.result_pks, q.result_chunk_seqs, q.result_distances)
         WITH ORDINALITY AS r (pk, chunk_seq, distance, rank);
ALTER TABLE pyembed.query_log
    DROP CONSTRAINT query_log_results_aligned,
    DROP COLUMN result_pks,
    DROP COLUMN result_chunk_seqs,
    DROP COLUMN result_distances;

-- SECURITY DEFINER: a writer prunes the log (its policy lets it delete searches) but may not
-- delete their results itself, as the foreign key's cascade could.
CREATE FUNCTION pyembed._query_log_deleted()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM pyembed.query_results AS r USING gone WHERE r.query_id = gone.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER query_log_deleted AFTER DELETE ON pyembed.query_log
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION pyembed._query_log_deleted();
