-- Undo 0009: the training records.
DROP TABLE pyembed.training_metrics;
DROP TABLE pyembed.training_runs;
