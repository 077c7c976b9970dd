-- Undo 0008: evaluations and the deployment history (a collection mid-switch loses its
-- pending version).
UPDATE pyembed.collections SET pending_version_id = NULL WHERE pending_version_id IS NOT NULL;
DROP TABLE pyembed.eval_metrics;
DROP TABLE pyembed.eval_runs;
DROP TABLE pyembed.eval_judgments;
DROP TABLE pyembed.eval_queries;
DROP TABLE pyembed.eval_sets;
DROP TABLE pyembed.deployments;
DROP FUNCTION pyembed._deployments_append_only();
