-- 0009: training records. FROZEN once released.
-- What was trained, from which data, with which loss and settings, and its loss curve.

CREATE TABLE pyembed.training_runs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id     bigint NOT NULL REFERENCES pyembed.collections ON DELETE CASCADE,
    base_version_id   bigint NOT NULL REFERENCES pyembed.model_versions ON DELETE RESTRICT,
    result_version_id bigint REFERENCES pyembed.model_versions ON DELETE SET NULL,
    status            text NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
    loss              text NOT NULL,
    -- Where the pairs came from and how many: per source, negatives, held-out queries.
    data_summary      jsonb NOT NULL DEFAULT '{}'::jsonb,
    params            jsonb NOT NULL DEFAULT '{}'::jsonb,
    eval_set_id       bigint REFERENCES pyembed.eval_sets ON DELETE SET NULL,
    checkpoint_dir    text,
    peak_memory_bytes bigint,
    error             text,
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);
CREATE INDEX training_runs_by_collection ON pyembed.training_runs (collection_id, id);
COMMENT ON TABLE pyembed.training_runs IS
    'fine-tuning runs: base version, data summary, loss, parameters, result version, status';

CREATE TABLE pyembed.training_metrics (
    run_id        bigint NOT NULL REFERENCES pyembed.training_runs ON DELETE CASCADE,
    step          integer NOT NULL CHECK (step >= 0),
    epoch         real,
    loss          real,
    learning_rate real,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, step)
);
COMMENT ON TABLE pyembed.training_metrics IS 'per-step training loss and learning rate';
