-- 0018: per-query metrics and paired comparisons of evaluation runs. FROZEN once released.
-- A mean hides whether a difference is more than noise: each retrieval run keeps every query's
-- value of each metric (aligned arrays keyed by eval query), and a comparison of two runs on the
-- same eval set records the paired test the gate made: queries, mean difference, its 95%
-- bootstrap interval and the randomization test's p-value.
CREATE TABLE pyembed.eval_query_values (
    run_id    bigint NOT NULL REFERENCES pyembed.eval_runs ON DELETE CASCADE,
    metric    text NOT NULL CHECK (metric ~ '^[a-z][a-z0-9_]*$'),
    k         integer NOT NULL DEFAULT 0 CHECK (k >= 0),
    query_ids bigint[] NOT NULL,
    "values"  double precision[] NOT NULL,
    PRIMARY KEY (run_id, metric, k),
    CHECK (cardinality(query_ids) = cardinality("values"))
);
COMMENT ON TABLE pyembed.eval_query_values IS
    'each eval query''s value of a metric in a run (query_ids aligned with values)';

CREATE TABLE pyembed.eval_comparisons (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    candidate_run_id bigint NOT NULL REFERENCES pyembed.eval_runs ON DELETE CASCADE,
    baseline_run_id  bigint NOT NULL REFERENCES pyembed.eval_runs ON DELETE CASCADE,
    metric           text NOT NULL,
    k                integer NOT NULL DEFAULT 0,
    queries          integer NOT NULL CHECK (queries >= 0),
    delta            double precision NOT NULL,
    ci_low           double precision NOT NULL,
    ci_high          double precision NOT NULL,
    p_value          double precision NOT NULL CHECK (p_value BETWEEN 0 AND 1),
    method           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (candidate_run_id, baseline_run_id, metric, k)
);
COMMENT ON TABLE pyembed.eval_comparisons IS
    'paired comparisons of two runs on the same queries: mean difference, 95% interval, p-value';
