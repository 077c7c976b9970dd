-- 0016 down: a registry of embedding models only (rerankers, their versions and files go).
ALTER TABLE pyembed.collections DROP CONSTRAINT collections_model_embeds,
                                DROP COLUMN model_task;
DELETE FROM pyembed.model_versions AS v USING pyembed.models AS m
WHERE v.model_id = m.id AND m.task = 'reranker';
DELETE FROM pyembed.models WHERE task = 'reranker';
ALTER TABLE pyembed.models DROP CONSTRAINT models_id_task_key,
                           DROP CONSTRAINT models_dimensions_of_embedders,
                           DROP COLUMN task,
                           ALTER COLUMN dimensions SET NOT NULL;
