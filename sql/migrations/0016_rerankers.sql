-- 0016: rerankers in the registry. FROZEN once released.
-- A model family is an embedding model (a bi-encoder: a vector of `dimensions` per text) or a
-- reranker (a cross-encoder: a score for a query and a text read together, no vector). A
-- reranker's versions, files, lineage and retirement are the registry's, as any model's.
ALTER TABLE pyembed.models
    ADD COLUMN task text NOT NULL DEFAULT 'embedding' CHECK (task IN ('embedding', 'reranker')),
    ALTER COLUMN dimensions DROP NOT NULL,
    ADD CONSTRAINT models_dimensions_of_embedders CHECK ((task = 'embedding') = (dimensions IS NOT NULL)),
    ADD CONSTRAINT models_id_task_key UNIQUE (id, task);
COMMENT ON COLUMN pyembed.models.task IS
    'embedding (a bi-encoder: dimensions) or reranker (a cross-encoder: scores query and text together)';
-- A collection embeds with an embedding model: the key it refers to says so.
ALTER TABLE pyembed.collections
    ADD COLUMN model_task text NOT NULL DEFAULT 'embedding' CHECK (model_task = 'embedding'),
    ADD CONSTRAINT collections_model_embeds FOREIGN KEY (model_id, model_task)
        REFERENCES pyembed.models (id, task);
