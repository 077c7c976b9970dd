-- 0019: learning policies. FROZEN once released.
-- A collection can learn without an operator: its policy says when to train (enough new
-- feedback since the last run, at most so often), how (training options), which eval sets gate
-- the result and what to do with it. A worker or `pyembed learn --watch` runs due policies; each
-- run records what started it and what was decided, and why.
CREATE TABLE pyembed.learning_policies (
    collection_id  bigint PRIMARY KEY REFERENCES pyembed.collections ON DELETE CASCADE,
    enabled        boolean NOT NULL DEFAULT true,
    min_feedback   integer NOT NULL DEFAULT 200 CHECK (min_feedback >= 1),
    min_interval   interval NOT NULL DEFAULT '1 hour' CHECK (min_interval >= interval '0'),
    train_options  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(train_options) = 'object'),
    eval_sets      text[] NOT NULL DEFAULT '{}',
    after_training text NOT NULL DEFAULT 'promote' CHECK (after_training IN ('nothing', 'promote')),
    updated_by     text NOT NULL DEFAULT current_user,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pyembed.learning_policies IS
    'when a collection trains by itself, how, which eval sets gate it and what happens after';

ALTER TABLE pyembed.training_runs
    ADD COLUMN triggered_by text NOT NULL DEFAULT 'manual'
        CHECK (triggered_by IN ('manual', 'policy')),
    ADD COLUMN outcome text CHECK (outcome IN ('promoted', 'refused', 'kept')),
    ADD COLUMN outcome_reason text;
COMMENT ON COLUMN pyembed.training_runs.outcome IS
    'what became of the result: promoted, refused by the gate, or kept (not offered for promotion)';
