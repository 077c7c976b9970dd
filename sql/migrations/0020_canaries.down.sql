-- 0020 down: no canaries.
UPDATE pyembed.training_runs SET outcome = 'kept' WHERE outcome = 'canary';
ALTER TABLE pyembed.training_runs DROP CONSTRAINT training_runs_outcome_check,
    ADD CONSTRAINT training_runs_outcome_check CHECK (outcome IN ('promoted', 'refused', 'kept'));
UPDATE pyembed.learning_policies SET after_training = 'promote' WHERE after_training = 'canary';
ALTER TABLE pyembed.learning_policies
    DROP COLUMN watch_searches,
    DROP COLUMN canary_require,
    DROP COLUMN canary_max_searches,
    DROP COLUMN canary_min_searches,
    DROP COLUMN canary_mode,
    DROP CONSTRAINT learning_policies_after_training_check,
    ADD CONSTRAINT learning_policies_after_training_check
        CHECK (after_training IN ('nothing', 'promote'));
-- The history is append-only: its trigger refuses the deletes a downgrade needs.
ALTER TABLE pyembed.deployments DISABLE TRIGGER deployments_append_only;
DELETE FROM pyembed.deployments WHERE action IN ('canary_started', 'canary_ended', 'online_check');
ALTER TABLE pyembed.deployments ENABLE TRIGGER deployments_append_only;
ALTER TABLE pyembed.deployments DROP CONSTRAINT deployments_action_check,
    ADD CONSTRAINT deployments_action_check
        CHECK (action IN ('switch_started', 'promote', 'switch_aborted', 'rollback', 'retire'));
DROP INDEX pyembed.query_log_by_canary;
ALTER TABLE pyembed.query_log DROP CONSTRAINT query_log_teams_aligned,
    DROP COLUMN result_teams,
    DROP COLUMN canary_id;
DROP TABLE pyembed.canaries;
