-- 0004: index builds. FROZEN once released.
-- Every ANN index pyembed builds is recorded with its parameters, duration, size and the
-- recall@10 it measured against an exact scan; `tune` stores its recall/latency curve here too.

CREATE TABLE pyembed.index_builds (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id    bigint NOT NULL REFERENCES pyembed.collections ON DELETE CASCADE,
    model_version_id bigint NOT NULL REFERENCES pyembed.model_versions ON DELETE CASCADE,
    index_name       text NOT NULL,
    method           text NOT NULL CHECK (method IN ('hnsw', 'ivfflat')),
    params           jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'building'
                     CHECK (status IN ('building', 'ready', 'failed', 'dropped')),
    rows_indexed     bigint,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    duration_ms      double precision,
    size_bytes       bigint,
    recall_at_10     double precision CHECK (recall_at_10 BETWEEN 0 AND 1),
    recall_queries   integer,
    tuning           jsonb,
    error            text
);
CREATE INDEX index_builds_by_collection ON pyembed.index_builds (collection_id, started_at);
COMMENT ON TABLE pyembed.index_builds IS
    'ANN indexes built by pyembed: method, parameters, duration, size, measured recall, tuning curve';
