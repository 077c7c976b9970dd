-- requires: 0006
-- Least privilege for the three roles; re-applied on every upgrade (after all other files, by
-- name) so functions added later are covered. Store tables made later are granted by
-- pyembed._create_store. Source tables are the application's: it grants SELECT on them to
-- readers and workers, and TRIGGER to writers (or writers own them).

GRANT USAGE ON SCHEMA pyembed, pyembed_store TO pyembed_reader, pyembed_writer, pyembed_worker;

-- Readers: search (which reads the catalog and stores and writes the query log) and feedback.
GRANT SELECT ON pyembed.collections, pyembed.models, pyembed.model_versions,
                pyembed.similarity_boosts, pyembed.collection_status, pyembed.worker_status,
                pyembed.index_builds
    TO pyembed_reader;
GRANT SELECT, INSERT ON pyembed.query_log, pyembed.query_results, pyembed.feedback TO pyembed_reader;
GRANT EXECUTE ON FUNCTION
    pyembed.search(text, vector, integer, jsonb, integer, integer, boolean, text),
    pyembed.search(text, text, integer, jsonb, integer, integer, boolean),
    pyembed.search_domain_aware(text, vector, text, text, text, text, integer, integer, jsonb, boolean, text),
    pyembed.record_feedback(bigint, jsonb, text, real),
    pyembed.cosine_similarity(vector, vector),
    pyembed.weighted_cosine_similarity(vector, vector, vector),
    pyembed.domain_boost(text, text, text, text),
    pyembed.domain_aware_similarity(vector, vector, text, text, text, text),
    pyembed.schema_revision(),
    pyembed.collection(text), pyembed.store_table(pyembed.collections, bigint),
    pyembed._qualified_source(pyembed.collections), pyembed._pk_sql(pyembed.collections, text),
    pyembed._key_columns(pyembed.collections),
    pyembed._pk_match_sql(pyembed.collections, text, text),
    pyembed._text_sql(pyembed.collections, text), pyembed._collection_counts(pyembed.collections),
    pyembed._distance_operator(text), pyembed._similarity(text, double precision),
    pyembed._check_search(pyembed.collections, vector, integer, jsonb),
    pyembed._has_column(pyembed.collections, text),
    pyembed._nearest(pyembed.collections, vector, integer, jsonb, integer, integer),
    pyembed._log_search(pyembed.collections, boolean, vector, text, integer, jsonb, jsonb, timestamptz)
    TO pyembed_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA pyembed_store TO pyembed_reader;

-- Writers: everything readers may, plus managing collections and their stores.
GRANT pyembed_reader TO pyembed_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON pyembed.collections, pyembed.similarity_boosts
    TO pyembed_writer;
GRANT SELECT, INSERT, UPDATE ON pyembed.queue TO pyembed_writer;
GRANT DELETE ON pyembed.query_log TO pyembed_writer;
GRANT CREATE ON SCHEMA pyembed_store TO pyembed_writer;
GRANT EXECUTE ON FUNCTION
    pyembed.create_collection(text, regclass, text[], text, text, text, integer, integer, boolean, text,
                              bigint),
    pyembed.alter_collection(text, integer, integer, text, jsonb, jsonb, bigint),
    pyembed._check_index_settings(text, jsonb, bigint),
    pyembed.drop_collection(text, boolean),
    pyembed.enqueue_all(text, bigint, smallint),
    pyembed.prune_query_log(interval),
    pyembed._enqueue_sql(text),
    pyembed._create_store(pyembed.collections, bigint),
    pyembed._create_view(pyembed.collections)
    TO pyembed_writer;

-- Workers: claim and finish queue items, write stores, heartbeat; read what they embed.
GRANT SELECT, UPDATE, DELETE ON pyembed.queue TO pyembed_worker;
GRANT SELECT, INSERT, DELETE ON pyembed.failed_items TO pyembed_worker;
GRANT SELECT, INSERT, UPDATE ON pyembed.workers TO pyembed_worker;
GRANT INSERT ON pyembed.queue TO pyembed_worker;
GRANT SELECT ON pyembed.collections, pyembed.models, pyembed.model_versions,
                pyembed.model_artifacts, pyembed.query_log
    TO pyembed_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pyembed_store TO pyembed_worker;
GRANT EXECUTE ON FUNCTION
    pyembed.source_rows(text, jsonb), pyembed.stored_hashes(text, bigint, jsonb),
    pyembed.apply_chunks(text, bigint, jsonb),
    pyembed.collection(text), pyembed.store_table(pyembed.collections, bigint),
    pyembed._qualified_source(pyembed.collections), pyembed._pk_sql(pyembed.collections, text),
    pyembed._pk_match_sql(pyembed.collections, text, text), pyembed._text_sql(pyembed.collections, text),
    pyembed._key_columns(pyembed.collections)
    TO pyembed_worker;
