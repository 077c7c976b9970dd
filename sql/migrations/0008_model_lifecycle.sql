-- 0008: model lifecycle. FROZEN once released.
-- deployments: the append-only history of which version served which collection and why.
-- eval_*: held-out query sets with graded judgments and every evaluation of every version,
-- metric by metric; the promotion gate reads them (the evaluator and trainer fill them).

CREATE TABLE pyembed.deployments (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id   bigint NOT NULL REFERENCES pyembed.collections ON DELETE CASCADE,
    action          text NOT NULL
                    CHECK (action IN ('switch_started', 'promote', 'switch_aborted', 'rollback',
                                      'retire')),
    from_version_id bigint REFERENCES pyembed.model_versions ON DELETE RESTRICT,
    to_version_id   bigint REFERENCES pyembed.model_versions ON DELETE RESTRICT,
    reason          text NOT NULL DEFAULT '',
    metrics         jsonb NOT NULL DEFAULT '{}'::jsonb,
    performed_by    text NOT NULL DEFAULT current_user,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployments_by_collection ON pyembed.deployments (collection_id, id);
COMMENT ON TABLE pyembed.deployments IS
    'append-only: every switch, promotion, rollback and retirement of a collection''s model version';

-- Append-only: history is never rewritten (rows go only with their collection).
CREATE FUNCTION pyembed._deployments_append_only()
RETURNS trigger
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = pg_catalog, pyembed
AS $$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT FROM pyembed.collections WHERE id = OLD.collection_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'pyembed.deployments is append-only' USING ERRCODE = 'insufficient_privilege',
        HINT = 'record a new deployment (promote or rollback) instead of changing history';
END
$$;
CREATE TRIGGER deployments_append_only BEFORE UPDATE OR DELETE ON pyembed.deployments
    FOR EACH ROW EXECUTE FUNCTION pyembed._deployments_append_only();

CREATE TABLE pyembed.eval_sets (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id bigint NOT NULL REFERENCES pyembed.collections ON DELETE CASCADE,
    name          text NOT NULL,
    source        text NOT NULL
                  CHECK (source IN ('query_log', 'held_out', 'beir', 'jsonl', 'manual')),
    description   text NOT NULL DEFAULT '',
    details       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (collection_id, name)
);
COMMENT ON TABLE pyembed.eval_sets IS 'held-out query sets of a collection, with their origin';

CREATE TABLE pyembed.eval_queries (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    eval_set_id bigint NOT NULL REFERENCES pyembed.eval_sets ON DELETE CASCADE,
    query_text  text NOT NULL CHECK (query_text <> ''),
    -- Where it came from: a query_log id, a BEIR query id, a line number.
    source_ref  text,
    UNIQUE (eval_set_id, query_text)
);
COMMENT ON TABLE pyembed.eval_queries IS 'the queries of an eval set';

CREATE TABLE pyembed.eval_judgments (
    eval_query_id bigint NOT NULL REFERENCES pyembed.eval_queries ON DELETE CASCADE,
    pk            jsonb NOT NULL CHECK (jsonb_typeof(pk) = 'array'),
    grade         real NOT NULL CHECK (grade >= 0),
    PRIMARY KEY (eval_query_id, pk)
);
COMMENT ON TABLE pyembed.eval_judgments IS 'graded relevance of source rows for an eval query (0 = not relevant)';

CREATE TABLE pyembed.eval_runs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id    bigint NOT NULL REFERENCES pyembed.collections ON DELETE CASCADE,
    model_version_id bigint NOT NULL REFERENCES pyembed.model_versions ON DELETE RESTRICT,
    eval_set_id      bigint REFERENCES pyembed.eval_sets ON DELETE CASCADE,
    kind             text NOT NULL DEFAULT 'retrieval'
                     CHECK (kind IN ('retrieval', 'similarity', 'clustering', 'bias', 'efficiency')),
    -- retrieval: 'exact' (the model alone) or 'deployed' (pyembed.search through the index).
    mode             text NOT NULL DEFAULT 'exact' CHECK (mode IN ('exact', 'deployed', 'n/a')),
    params           jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
    error            text,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX eval_runs_by_version ON pyembed.eval_runs (model_version_id, eval_set_id, id);
COMMENT ON TABLE pyembed.eval_runs IS 'every evaluation of a model version: set, kind, mode, settings';

CREATE TABLE pyembed.eval_metrics (
    run_id bigint NOT NULL REFERENCES pyembed.eval_runs ON DELETE CASCADE,
    metric text NOT NULL CHECK (metric ~ '^[a-z][a-z0-9_]*$'),
    -- The cut-off of @k metrics; 0 for metrics without one.
    k      integer NOT NULL DEFAULT 0 CHECK (k >= 0),
    value  double precision NOT NULL,
    PRIMARY KEY (run_id, metric, k)
);
COMMENT ON TABLE pyembed.eval_metrics IS 'one value per metric and k of an evaluation run';
