-- 0003: retrieval records. FROZEN once released.
-- Every search is logged with its parameters and its ordered results, so the platform can learn
-- from what was asked and what was chosen; feedback ties clicks and judgments to a logged search.

CREATE TABLE pyembed.query_log (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id    bigint NOT NULL REFERENCES pyembed.collections ON DELETE CASCADE,
    model_version_id bigint REFERENCES pyembed.model_versions ON DELETE SET NULL,
    query_text       text,
    query_vector     vector,
    k                integer NOT NULL CHECK (k > 0),
    params           jsonb NOT NULL DEFAULT '{}'::jsonb,
    result_count     integer NOT NULL CHECK (result_count >= 0),
    latency_ms       real NOT NULL CHECK (latency_ms >= 0),
    searched_by      text NOT NULL DEFAULT current_user,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX query_log_by_collection ON pyembed.query_log (collection_id, created_at);
CREATE INDEX query_log_by_time ON pyembed.query_log (created_at);
COMMENT ON TABLE pyembed.query_log IS
    'every logged search: collection, model version, query text and vector, parameters, latency';

CREATE TABLE pyembed.query_results (
    query_id  bigint NOT NULL REFERENCES pyembed.query_log ON DELETE CASCADE,
    rank      integer NOT NULL CHECK (rank > 0),
    pk        jsonb NOT NULL CHECK (jsonb_typeof(pk) = 'array'),
    chunk_seq integer NOT NULL,
    distance  double precision NOT NULL,
    PRIMARY KEY (query_id, rank)
);
COMMENT ON TABLE pyembed.query_results IS 'the rows each logged search returned, in order';

CREATE TABLE pyembed.feedback (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    query_id    bigint NOT NULL REFERENCES pyembed.query_log ON DELETE CASCADE,
    pk          jsonb NOT NULL CHECK (jsonb_typeof(pk) = 'array'),
    signal      text NOT NULL DEFAULT 'click' CHECK (signal ~ '^[a-z][a-z0-9_]{0,31}$'),
    weight      real NOT NULL DEFAULT 1.0 CHECK (weight BETWEEN -100 AND 100),
    recorded_by text NOT NULL DEFAULT current_user,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_by_query ON pyembed.feedback (query_id);
COMMENT ON TABLE pyembed.feedback IS
    'clicks, purchases and relevance judgments on the results of logged searches';
