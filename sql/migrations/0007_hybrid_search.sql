-- 0007: full-text search beside the vectors, for hybrid search (and, in sql/idempotent, logging
-- searches run on standbys). FROZEN once released.
-- Every store table gets a tsvector of its chunks (a stored generated column, so workers write
-- nothing extra) with a GIN index; BM25 needs the number of chunks and their mean length, which
-- text_search_stats keeps per store instead of counting the whole store on every search.

CREATE TABLE pyembed.text_search_stats (
    collection_id    bigint NOT NULL REFERENCES pyembed.collections ON DELETE CASCADE,
    model_version_id bigint NOT NULL REFERENCES pyembed.model_versions ON DELETE CASCADE,
    documents        bigint NOT NULL CHECK (documents >= 0),
    avg_length       double precision NOT NULL CHECK (avg_length >= 0),
    refreshed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, model_version_id)
);
COMMENT ON TABLE pyembed.text_search_stats IS
    'per store: chunks with text and their mean length in lexemes, for BM25 in hybrid search';

-- Stores created before this revision: add the column and its index.
DO $$
DECLARE
    c record;
    version_id bigint;
    store text;
BEGIN
    FOR c IN SELECT * FROM pyembed.collections LOOP
        FOREACH version_id IN ARRAY array_remove(ARRAY[c.active_version_id, c.pending_version_id], NULL)
        LOOP
            store := c.name || '_v' || version_id;
            CONTINUE WHEN to_regclass(format('%I.%I', 'pyembed_store', store)) IS NULL;
            EXECUTE format(
                'ALTER TABLE %I.%I ADD COLUMN IF NOT EXISTS chunk_tsv tsvector '
                'GENERATED ALWAYS AS (to_tsvector(%L::regconfig, chunk)) STORED',
                'pyembed_store', store, coalesce(c.settings->>'text_search_config', 'english'));
            EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I USING gin (chunk_tsv)',
                           store || '_chunk_tsv', 'pyembed_store', store);
        END LOOP;
    END LOOP;
END
$$;

-- create_collection and alter_collection take index settings (auto_index_min_rows,
-- index_options) from this revision on: drop the old signatures so calls stay unambiguous.
DROP FUNCTION IF EXISTS pyembed.create_collection(text, regclass, text[], text, text, text, integer,
                                                  integer, boolean, text);
DROP FUNCTION IF EXISTS pyembed.alter_collection(text, integer, integer, text, jsonb);
