-- The demo's own SQL: its table, its collection, and the searches and clicks it shows.
-- Loaded by pyembed.demo.walkthrough through pyembed.db.queries.Catalog.

-- name: demo_reset
-- The demo starts its table and collection anew on every run.
CREATE SCHEMA IF NOT EXISTS demo;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pyembed.collections WHERE name = 'stdlib') THEN
        PERFORM pyembed.drop_collection('stdlib');
    END IF;
END
$$;
DROP TABLE IF EXISTS demo.stdlib_docs;

-- name: demo_table
CREATE TABLE demo.stdlib_docs (
    name   text PRIMARY KEY,
    module text NOT NULL,
    kind   text NOT NULL,
    body   text NOT NULL
);

-- name: demo_copy
COPY demo.stdlib_docs (name, module, kind, body) FROM STDIN;

-- name: demo_create_collection
SELECT pyembed.create_collection('stdlib', 'demo.stdlib_docs', template => '{name}: {body}');

-- name: demo_search
SELECT pk->>0, similarity
FROM pyembed.search('stdlib', %(q)s::vector, k => 5, query_text => %(text)s);

-- name: demo_hybrid
SELECT pk->>0, dense_rank, text_rank, score
FROM pyembed.hybrid_search('stdlib', %(text)s, %(q)s::vector, k => 5);

-- name: demo_domain
SELECT pk->>0, similarity, score
FROM pyembed.search_domain_aware('stdlib', %(q)s::vector, query_domain => 'datetime',
                                 query_type => 'function', domain_column => 'module',
                                 type_column => 'kind', k => 5, query_text => %(text)s);

-- name: demo_user_search
SELECT query_id, pk->>0 FROM pyembed.search('stdlib', %(q)s::vector, 10, query_text => %(text)s);

-- name: demo_click
SELECT pyembed.record_feedback(%(id)s, %(pk)s);

-- name: demo_before_after
SELECT model_version, label, value
FROM pyembed.eval_latest
WHERE collection = 'stdlib' AND eval_set_id = %(set_id)s AND mode = 'deployed'
  AND label IN ('ndcg@10', 'mrr@10', 'recall@10')
ORDER BY label, model_version_id;
