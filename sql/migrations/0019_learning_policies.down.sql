-- 0019 down: training only when someone runs it.
ALTER TABLE pyembed.training_runs
    DROP COLUMN outcome_reason,
    DROP COLUMN outcome,
    DROP COLUMN triggered_by;
DROP TABLE pyembed.learning_policies;
