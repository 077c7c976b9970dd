-- requires: 0011
-- Every privilege pyembed gives, in one place, re-applied last on every upgrade so that objects
-- added later are covered. tests/security/test_acl.py compares the result with an allow-list:
-- a new function or table without a decision here fails CI.
--
-- Roles (NOLOGIN groups; login roles are made members):
--   pyembed_owner   owns the schemas, tables, functions and stores; SECURITY DEFINER functions
--                   run as it. The admin who migrates acts as it; nobody else needs to.
--   pyembed_reader  searches (row-level security of the source applies), records feedback on
--                   its own searches, reads the catalog and the status of what it may read.
--   pyembed_writer  a reader that also manages collections through the API functions, trains
--                   and evaluates (it reads the whole query log).
--   pyembed_worker  claims queue items and writes the stores; reads the sources it embeds.
-- Source tables are the application's: it grants SELECT on them to readers and workers, and
-- SELECT and TRIGGER to the writers who register them.

-- Ownership: objects created by the migrating role go to pyembed_owner.
DO $$
DECLARE
    r record;
BEGIN
    ALTER SCHEMA pyembed OWNER TO pyembed_owner;
    ALTER SCHEMA pyembed_store OWNER TO pyembed_owner;
    FOR r IN
        SELECT cl.oid::regclass AS rel, cl.relkind FROM pg_catalog.pg_class AS cl
        WHERE cl.relnamespace IN ('pyembed'::regnamespace, 'pyembed_store'::regnamespace)
          AND cl.relkind IN ('r', 'p', 'v', 'm') AND cl.relowner <> 'pyembed_owner'::regrole
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO pyembed_owner',
                       CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                      ELSE 'TABLE' END, r.rel);
    END LOOP;
    FOR r IN
        SELECT p.oid::regprocedure AS fn FROM pg_catalog.pg_proc AS p
        JOIN pg_catalog.pg_language AS l ON l.oid = p.prolang
        WHERE p.pronamespace IN ('pyembed'::regnamespace, 'pyembed_store'::regnamespace)
          AND p.proowner <> 'pyembed_owner'::regrole
          -- Functions in untrusted languages (plpython3u) stay with the superuser who made them.
          AND l.lanpltrusted
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO pyembed_owner', r.fn);
    END LOOP;
END
$$;

-- Nothing is anyone's by default.
REVOKE ALL ON SCHEMA pyembed, pyembed_store FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA pyembed, pyembed_store FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pyembed, pyembed_store FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pyembed FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE pyembed_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
-- Earlier releases granted more: start every upgrade from none.
REVOKE ALL ON ALL TABLES IN SCHEMA pyembed, pyembed_store
    FROM pyembed_reader, pyembed_writer, pyembed_worker;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pyembed, pyembed_store
    FROM pyembed_reader, pyembed_writer, pyembed_worker;
REVOKE CREATE ON SCHEMA pyembed, pyembed_store FROM pyembed_reader, pyembed_writer, pyembed_worker;

GRANT USAGE ON SCHEMA pyembed, pyembed_store TO pyembed_reader, pyembed_writer, pyembed_worker;
GRANT pyembed_reader TO pyembed_writer;

-- Catalog and records everybody of pyembed's may read.
GRANT SELECT ON pyembed.collections, pyembed.models, pyembed.model_versions,
                pyembed.similarity_boosts, pyembed.index_builds, pyembed.deployments,
                pyembed.eval_sets, pyembed.eval_queries, pyembed.eval_judgments,
                pyembed.eval_runs, pyembed.eval_metrics, pyembed.training_runs,
                pyembed.training_metrics, pyembed.settings,
                pyembed.collection_status, pyembed.worker_status, pyembed.model_version_status,
                pyembed.eval_results, pyembed.eval_latest, pyembed.eval_vs_parent,
                pyembed.eval_leaderboard
    TO pyembed_reader, pyembed_worker;
-- The schema revision (pyembed.schema_revision()): a worker refuses a database at another one.
-- To PUBLIC, not to pyembed's roles: the number is no secret, and a grant to a role would keep
-- the role from being dropped by a downgrade (0006's down drops the roles no object needs).
GRANT SELECT ON public.pyembed_alembic_version TO PUBLIC;
-- The log, under row-level security (policies below): readers see their own searches.
GRANT SELECT ON pyembed.query_log, pyembed.query_results, pyembed.feedback
    TO pyembed_reader, pyembed_worker;

-- Writers: steering tables, training and evaluation records, registering model versions
-- (which workers then load and run: model registration is trusted code), pruning the log.
GRANT INSERT, UPDATE, DELETE ON pyembed.similarity_boosts TO pyembed_writer;
GRANT INSERT, UPDATE ON pyembed.training_runs, pyembed.training_metrics, pyembed.eval_sets,
                        pyembed.eval_queries, pyembed.eval_judgments, pyembed.eval_runs,
                        pyembed.eval_metrics, pyembed.models, pyembed.model_versions,
                        pyembed.index_builds
    TO pyembed_writer;
GRANT SELECT, INSERT ON pyembed.model_artifacts TO pyembed_writer;
-- Per-query values and paired comparisons of evaluations (from 0018 on): read like the metrics,
-- written by whoever evaluates and promotes.
DO $$
BEGIN
    IF to_regclass('pyembed.eval_comparisons') IS NOT NULL THEN
        GRANT SELECT ON pyembed.eval_query_values, pyembed.eval_comparisons
            TO pyembed_reader, pyembed_worker;
        GRANT INSERT, UPDATE ON pyembed.eval_query_values, pyembed.eval_comparisons
            TO pyembed_writer;
    END IF;
END
$$;
GRANT SELECT ON pyembed.failed_items TO pyembed_writer;
GRANT DELETE ON pyembed.query_log TO pyembed_writer;

-- Workers: the queue, dead letters, heartbeats, model files, index build records.
GRANT SELECT, INSERT, UPDATE, DELETE ON pyembed.queue TO pyembed_worker;
GRANT SELECT, INSERT, DELETE ON pyembed.failed_items TO pyembed_worker;
GRANT SELECT, INSERT, UPDATE ON pyembed.workers TO pyembed_worker;
GRANT SELECT ON pyembed.model_artifacts TO pyembed_worker;
GRANT INSERT, UPDATE ON pyembed.index_builds TO pyembed_worker;

-- Functions. Helpers that only build SQL text, or check arguments, run as their caller and give
-- nothing: every role of pyembed's may run them.
GRANT EXECUTE ON FUNCTION
    pyembed.schema_revision(), pyembed.collection(text),
    pyembed._comparison(bigint, bigint, text, integer),  -- eval_vs_parent: as the reader
    pyembed.store_table(pyembed.collections, bigint), pyembed._qualified_source(pyembed.collections),
    pyembed._key_columns(pyembed.collections), pyembed._pk_sql(pyembed.collections, text),
    pyembed._pk_match_sql(pyembed.collections, text, text),
    pyembed._text_sql(pyembed.collections, text), pyembed._has_column(pyembed.collections, text),
    pyembed._distance_operator(text), pyembed._similarity(text, double precision),
    pyembed._distance(text), pyembed._store_name(text, bigint), pyembed._storage(pyembed.collections),
    pyembed._rerank(pyembed.collections), pyembed._store_kind(pyembed.collections, integer),
    pyembed._search_function(pyembed.collections, bigint),
    pyembed._as_store_type(pyembed.collections, text, integer),
    pyembed._binary_sql(text, integer), pyembed._index_key(pyembed.collections, integer),
    pyembed.max_results(),
    pyembed.max_query_lexemes(), pyembed.max_text_candidates(),
    pyembed.embedding_version(text), pyembed._work_channel(),
    pyembed._sees_every_row(regclass), pyembed._collection_counts(pyembed.collections),
    pyembed._filter_sql(pyembed.collections, jsonb, text),
    pyembed._filter_clause(oid, jsonb, text, integer, text[], text[], text[]),
    pyembed._filter_column(oid, text), pyembed._base_type(oid),
    pyembed._nearest_sql(pyembed.collections, bigint, integer, boolean, text, text, boolean),
    pyembed._filtered_sql(pyembed.collections, bigint, integer, text, vector, integer, integer,
                          integer, text[])
    TO pyembed_reader, pyembed_worker;

-- Readers: search in every form, feedback, similarity functions.
GRANT EXECUTE ON FUNCTION
    pyembed.search(text, vector, integer, jsonb, integer, integer, boolean, text, integer, text,
                   vector),
    pyembed.search(text, text, integer, jsonb, integer, integer, boolean, integer, text),
    pyembed.hybrid_search(text, text, vector, integer, double precision, double precision,
                          integer, integer, jsonb, integer, integer, boolean, integer, text),
    pyembed.search_domain_aware(text, vector, text, text, text, text, integer, integer, jsonb,
                                boolean, text),
    pyembed.log_search(text, vector, jsonb, text, integer, jsonb, double precision),
    pyembed.record_feedback(bigint, jsonb, text, real),
    pyembed.cosine_similarity(vector, vector),
    pyembed.weighted_cosine_similarity(vector, vector, vector),
    pyembed.domain_boost(text, text, text, text),
    pyembed.domain_aware_similarity(vector, vector, text, text, text, text),
    pyembed._check_search(pyembed.collections, vector, integer, jsonb),
    pyembed._nearest(pyembed.collections, vector, integer, jsonb, integer, integer),
    pyembed._nearest_hits(pyembed.collections, vector, integer, jsonb, integer, integer),
    pyembed._nearest_function(pyembed.collections, bigint),
    -- SECURITY DEFINER; refuse callers other than the search functions above.
    pyembed._log_search(pyembed.collections, boolean, vector, text, integer, jsonb, jsonb,
                        timestamptz, bigint),
    pyembed._log_search(pyembed.collections, boolean, vector, text, integer, jsonb, jsonb[],
                        integer[], double precision[], timestamptz, bigint, double precision[],
                        bigint, smallint[]),
    pyembed._text_search_config(pyembed.collections),
    -- SECURITY DEFINER; counts only.
    pyembed._text_stats(pyembed.collections),
    pyembed._lexeme_tsquery(text), pyembed._query_lexemes(pyembed.collections, text),
    pyembed._text_matches(pyembed.collections, text, vector, integer, jsonb),
    pyembed._document_frequency(pyembed.collections, tsquery, integer)
    TO pyembed_reader;
DO $$
BEGIN
    IF to_regprocedure('pyembed.embed(text,text)') IS NOT NULL THEN
        REVOKE ALL ON FUNCTION pyembed.embed(text, text) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION pyembed.embed(text, text) TO pyembed_reader;
    END IF;
    IF to_regprocedure('pyembed._model_call(text,text,text)') IS NOT NULL THEN
        -- plpython3u, the superuser's: reaches only the admin's embed_url and the two model
        -- endpoints, as pyembed.embed and pyembed.rerank would for the reader anyway.
        REVOKE ALL ON FUNCTION pyembed._model_call(text, text, text) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION pyembed._model_call(text, text, text) TO pyembed_reader;
    END IF;
    -- Reranked searches (087, from 0017 on); pyembed.rerank only where plpython3u exists.
    IF to_regprocedure('pyembed._reranked_search(text,vector,text,integer,jsonb,integer,integer,'
                       'boolean,integer,text)') IS NOT NULL THEN
        GRANT EXECUTE ON FUNCTION
            pyembed._reranked_search(text, vector, text, integer, jsonb, integer, integer, boolean,
                                     integer, text),
            pyembed._check_rerank(pyembed.collections, text, integer, integer, text),
            pyembed._reranker_version(pyembed.collections, text)
            TO pyembed_reader;
    END IF;
    IF to_regprocedure('pyembed.rerank(text,text[],text)') IS NOT NULL THEN
        REVOKE ALL ON FUNCTION pyembed.rerank(text, text[], text) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION pyembed.rerank(text, text[], text) TO pyembed_reader;
    END IF;
    IF to_regprocedure('pyembed._local_model_parts(bigint)') IS NOT NULL THEN
        -- SECURITY DEFINER; model files only while the admin chose local mode.
        GRANT EXECUTE ON FUNCTION pyembed._local_model_parts(bigint) TO pyembed_reader;
    END IF;
END
$$;

-- Writers: the collection and model-lifecycle API. The SECURITY DEFINER halves validate every
-- argument themselves; the capture trigger functions must be executable to be attached (by
-- create_collection, as the writer) and check which table fires them.
GRANT EXECUTE ON FUNCTION
    pyembed.create_collection(text, regclass, text[], text, text, text, integer, integer, boolean,
                              text, bigint, jsonb, text),
    pyembed._adopt_embeddings(text, text),
    pyembed._register_collection(text, regclass, text[], text, text, text, integer, integer,
                                 text, bigint, jsonb),
    pyembed._capture_changes(), pyembed._capture_truncate(),
    pyembed.alter_collection(text, integer, integer, text, jsonb, jsonb, bigint),
    pyembed._alter_collection(text, integer, integer, text, jsonb, jsonb, bigint),
    pyembed.drop_collection(text, boolean), pyembed._unregister_collection(text, boolean),
    pyembed.enqueue_all(text, bigint, smallint),
    pyembed._enqueue_keys(bigint, jsonb, bigint, smallint),
    pyembed.prune_query_log(interval), pyembed._retention(jsonb),
    pyembed.begin_switch(text, bigint, boolean, text),
    pyembed._begin_switch(text, bigint, boolean, text),
    pyembed.switch_backlog(text), pyembed.finish_switch(text, text, jsonb),
    pyembed.abort_switch(text, text), pyembed.rollback(text, text), pyembed._rollback(text, text),
    pyembed.retire_version(bigint, text),
    pyembed.store_embeddings(text, bigint), pyembed.store_chunks(text, bigint),
    pyembed.source_texts(text),
    pyembed.source_rows(text, jsonb),  -- eval sets and training read rows by key
    pyembed.judge(text, text, text, jsonb, real), pyembed.row_labels(text, text),
    pyembed.auto_index_due(bigint[]),
    -- SECURITY DEFINER: index builds and drops for roles that do not own the stores.
    pyembed.build_index(text, text, jsonb, bigint), pyembed.drop_index(text, text)
    TO pyembed_writer;
-- Learning policies (075, from 0019 on): anyone of pyembed's may read them; writers set them
-- through the functions (which validate every option) and read what is due (the view counts
-- feedback across tenants, which writers read anyway for training).
DO $$
BEGIN
    IF to_regclass('pyembed.learning_policies') IS NOT NULL THEN
        GRANT SELECT ON pyembed.learning_policies TO pyembed_reader, pyembed_worker;
        GRANT SELECT ON pyembed.learning_status TO pyembed_writer;
        GRANT EXECUTE ON FUNCTION
            pyembed.set_learning_policy(text, integer, interval, jsonb, text[], text, boolean,
                                        text, integer, integer, integer, text),
            pyembed.drop_learning_policy(text)
            TO pyembed_writer;
    END IF;
END
$$;
-- Canaries (077, from 0020 on): a search must know whether one runs, so readers read the
-- canaries (versions, settings and decisions; no text of anyone's) and run the canary search,
-- which logs through _log_search like every search. The scores and online metrics count
-- clicks across tenants: writers'. Writers start, end and record.
DO $$
BEGIN
    IF to_regclass('pyembed.canaries') IS NOT NULL THEN
        GRANT SELECT ON pyembed.canaries TO pyembed_reader, pyembed_worker;
        GRANT SELECT ON pyembed.canary_status, pyembed.online_metrics, pyembed.search_outcomes
            TO pyembed_writer;
        GRANT EXECUTE ON FUNCTION
            pyembed._open_canary(pyembed.collections), pyembed.canary_version(text),
            pyembed._interleave(jsonb[], jsonb[], integer),
            pyembed._canary_search(text, vector, vector, integer, jsonb, integer, integer,
                                   boolean, text)
            TO pyembed_reader;
        GRANT EXECUTE ON FUNCTION
            pyembed.start_canary(text, bigint, text, real, integer, integer, double precision,
                                 text, text),
            pyembed.end_canary(text, text, text, jsonb),
            pyembed.record_online_check(text, bigint, bigint, jsonb, text),
            pyembed._sign_test(bigint, bigint), pyembed._normal_p(double precision)
            TO pyembed_writer;
    END IF;
END
$$;

-- Workers: read the rows to embed, write the chunks, find indexes due.
GRANT EXECUTE ON FUNCTION
    pyembed.source_rows(text, jsonb), pyembed.source_vectors(text, jsonb),
    pyembed.stored_hashes(text, bigint, jsonb), pyembed.apply_chunks(text, bigint, jsonb), pyembed.auto_index_due(bigint[]),
    pyembed.build_index(text, text, jsonb, bigint)
    TO pyembed_worker;

-- Row-level security of the log: a reader sees its own searches, as the tenant the collection's
-- tenant setting names; writers (training) and workers (index recall samples) see all; the owner
-- is not subject to it. Nobody inserts directly: _log_search and record_feedback do.
DROP POLICY IF EXISTS own_searches ON pyembed.query_log;
CREATE POLICY own_searches ON pyembed.query_log FOR SELECT TO pyembed_reader
    -- Inline, not pyembed._current_tenant: a policy must not depend on a re-applied function.
    USING (searched_by = current_user AND tenant IS NOT DISTINCT FROM (
        SELECT nullif(current_setting(c.settings->>'tenant_setting', true), '')
        FROM pyembed.collections AS c WHERE c.id = collection_id));
DROP POLICY IF EXISTS all_searches ON pyembed.query_log;
CREATE POLICY all_searches ON pyembed.query_log FOR SELECT TO pyembed_writer, pyembed_worker
    USING (true);
DROP POLICY IF EXISTS prune_searches ON pyembed.query_log;
CREATE POLICY prune_searches ON pyembed.query_log FOR DELETE TO pyembed_writer USING (true);
-- A search's results: since 0014 a view over the log (security_invoker), which the log's
-- policies decide; a table of their own before, with this policy.
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'pyembed.query_results'::regclass) = 'r' THEN
        DROP POLICY IF EXISTS of_visible_searches ON pyembed.query_results;
        CREATE POLICY of_visible_searches ON pyembed.query_results
            FOR SELECT TO pyembed_reader, pyembed_worker
            USING ((SELECT true FROM pyembed.query_log AS q WHERE q.id = query_id));
    END IF;
END
$$;
DROP POLICY IF EXISTS of_visible_searches ON pyembed.feedback;
CREATE POLICY of_visible_searches ON pyembed.feedback FOR SELECT TO pyembed_reader, pyembed_worker
    USING ((SELECT true FROM pyembed.query_log AS q WHERE q.id = query_id));

-- A store's privileges and row-level security: readers see a chunk only while its source row is
-- visible to them (the source's own privileges and row-level security decide), workers write it.
CREATE OR REPLACE FUNCTION pyembed._grant_store(c pyembed.collections, version_id bigint)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    store text := pyembed.store_table(c, version_id);
    store_name text := pyembed._store_name(c.name, version_id);
BEGIN
    EXECUTE format('ALTER TABLE %s OWNER TO pyembed_owner', store);
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', store);
    EXECUTE format('GRANT SELECT ON %s TO pyembed_reader', store);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO pyembed_worker', store);
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', store);
    EXECUTE format('DROP POLICY IF EXISTS visible_rows ON %s', store);
    -- A scalar subquery, not EXISTS: the planner would turn EXISTS into a hashed scan of the
    -- whole source on every search; this looks up just the candidates, by the source's key.
    EXECUTE format('CREATE POLICY visible_rows ON %s FOR SELECT TO pyembed_reader '
                   'USING ((SELECT true FROM %s AS s WHERE (%s) = (%s)))',
                   store, pyembed._qualified_source(c),
                   (SELECT string_agg(format('s.%I', col), ', ' ORDER BY ord)
                      FROM unnest(c.pk_columns) WITH ORDINALITY AS k(col, ord)),
                   (SELECT string_agg(format('%I.%I', store_name, col), ', ' ORDER BY ord)
                      FROM unnest(c.pk_columns) WITH ORDINALITY AS k(col, ord)));
    EXECUTE format('DROP POLICY IF EXISTS worker_rows ON %s', store);
    EXECUTE format('CREATE POLICY worker_rows ON %s TO pyembed_worker USING (true) WITH CHECK (true)',
                   store);
END
$$;

-- The chunk view reads as its caller only from PostgreSQL 15 on (security_invoker); before, it
-- would read as its owner, past the source's row-level security, so readers do not get it.
CREATE OR REPLACE FUNCTION pyembed._grant_view(c pyembed.collections)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    view_name text := format('%I.%I', 'pyembed_store', c.name || '_chunks');
BEGIN
    EXECUTE format('ALTER VIEW %s OWNER TO pyembed_owner', view_name);
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', view_name);
    IF current_setting('server_version_num')::int >= 150000 THEN
        EXECUTE format('GRANT SELECT ON %s TO pyembed_reader', view_name);
    END IF;
END
$$;

-- A store's search functions (generated by _compile_nearest and _compile_search) are run by
-- whoever searches, as themselves: they read the store and the source with their privileges
-- and row-level security, and log through _log_search, which records the caller.
CREATE OR REPLACE FUNCTION pyembed._grant_nearest(c pyembed.collections, version_id bigint)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    search_function text;
BEGIN
    FOREACH search_function IN ARRAY ARRAY[
        pyembed._nearest_function(c, version_id)
            || '(@extschema:vector@.vector, integer, integer, integer, boolean)',
        pyembed._search_function(c, version_id)
            || '(@extschema:vector@.vector, integer, jsonb, integer, integer, boolean, text)']
    LOOP
        IF to_regprocedure(search_function) IS NOT NULL THEN
            EXECUTE format('ALTER FUNCTION %s OWNER TO pyembed_owner', search_function);
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', search_function);
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pyembed_reader', search_function);
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pyembed._grant_store(pyembed.collections, bigint),
                       pyembed._grant_view(pyembed.collections),
                       pyembed._grant_nearest(pyembed.collections, bigint) FROM PUBLIC;
ALTER FUNCTION pyembed._grant_store(pyembed.collections, bigint) OWNER TO pyembed_owner;
ALTER FUNCTION pyembed._grant_view(pyembed.collections) OWNER TO pyembed_owner;
ALTER FUNCTION pyembed._grant_nearest(pyembed.collections, bigint) OWNER TO pyembed_owner;

-- Stores and views that exist already (upgrades from before revision 0011), kept ones of earlier
-- versions (for rollbacks) included.
DO $$
DECLARE
    c pyembed.collections;
    version_id bigint;
BEGIN
    FOR c IN SELECT * FROM pyembed.collections LOOP
        FOR version_id IN SELECT pyembed._store_versions(c.name) LOOP
            PERFORM pyembed._grant_store(c, version_id);
            IF to_regproc(pyembed._nearest_function(c, version_id)) IS NOT NULL THEN
                PERFORM pyembed._grant_nearest(c, version_id);
            END IF;
        END LOOP;
        IF to_regclass(format('%I.%I', 'pyembed_store', c.name || '_chunks')) IS NOT NULL THEN
            PERFORM pyembed._grant_view(c);
        END IF;
    END LOOP;
END
$$;
