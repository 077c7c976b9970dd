-- 0018 down: means only.
DROP TABLE pyembed.eval_comparisons;
DROP TABLE pyembed.eval_query_values;
