-- Undo 0013: the foreign keys come back. Rows a search logged while its collection was being
-- dropped (no key stopped them) have nothing to refer to and go first.
DROP TRIGGER model_version_deleted ON pyembed.model_versions;
DROP TRIGGER collection_deleted ON pyembed.collections;
DROP TRIGGER query_log_deleted ON pyembed.query_log;
DROP FUNCTION pyembed._model_version_deleted();
DROP FUNCTION pyembed._collection_deleted();
DROP FUNCTION pyembed._query_log_deleted();
DELETE FROM pyembed.query_log AS q
WHERE NOT EXISTS (SELECT FROM pyembed.collections AS c WHERE c.id = q.collection_id);
DELETE FROM pyembed.query_results AS r
WHERE NOT EXISTS (SELECT FROM pyembed.query_log AS q WHERE q.id = r.query_id);
UPDATE pyembed.query_log AS q SET model_version_id = NULL
WHERE NOT EXISTS (SELECT FROM pyembed.model_versions AS v WHERE v.id = q.model_version_id);
ALTER TABLE pyembed.query_log
    ADD CONSTRAINT query_log_collection_id_fkey FOREIGN KEY (collection_id)
        REFERENCES pyembed.collections ON DELETE CASCADE,
    ADD CONSTRAINT query_log_model_version_id_fkey FOREIGN KEY (model_version_id)
        REFERENCES pyembed.model_versions ON DELETE SET NULL;
ALTER TABLE pyembed.query_results
    ADD CONSTRAINT query_results_query_id_fkey FOREIGN KEY (query_id)
        REFERENCES pyembed.query_log ON DELETE CASCADE;
