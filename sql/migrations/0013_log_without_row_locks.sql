-- 0013: the query log without foreign keys. FROZEN once released.
-- Every search writes one query_log row and a query_results row per result. Their foreign keys
-- made each search lock its collection's row (FOR KEY SHARE: concurrent searches of one collection
-- share it through multixacts, written to the WAL) and check its own query_log row once per
-- result. Only pyembed._log_search writes these rows, in one statement that references existing
-- rows, so the checks bought nothing; what the keys' ON DELETE actions did, triggers do per
-- statement: a collection's log goes with it, results go with their search, a deleted model
-- version leaves its searches with no version.
ALTER TABLE pyembed.query_results DROP CONSTRAINT query_results_query_id_fkey;
ALTER TABLE pyembed.query_log DROP CONSTRAINT query_log_collection_id_fkey,
                              DROP CONSTRAINT query_log_model_version_id_fkey;

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

CREATE FUNCTION pyembed._collection_deleted()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM pyembed.query_log AS q USING gone WHERE q.collection_id = gone.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER collection_deleted AFTER DELETE ON pyembed.collections
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION pyembed._collection_deleted();

CREATE FUNCTION pyembed._model_version_deleted()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE pyembed.query_log AS q SET model_version_id = NULL
    FROM gone WHERE q.model_version_id = gone.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER model_version_deleted AFTER DELETE ON pyembed.model_versions
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION pyembed._model_version_deleted();
