-- Named queries of learning policies: what is due, and what each run decided.

-- name: learning_status
SELECT collection, enabled, min_feedback, min_interval, train_options, eval_sets, after_training,
       new_feedback, due, next_run_not_before, last_run_id, last_run_status, last_outcome,
       last_outcome_reason, canary_mode, canary_min_searches, canary_max_searches, watch_searches,
       canary_require
FROM pyembed.learning_status
WHERE %(collections)s::text[] IS NULL OR collection = ANY (%(collections)s::text[])
ORDER BY collection;

-- name: set_learning_policy
SELECT (pyembed.set_learning_policy(%(collection)s::text, %(min_feedback)s::integer,
                                    %(min_interval)s::interval, %(train_options)s::jsonb,
                                    %(eval_sets)s::text[], %(after_training)s::text,
                                    %(enabled)s::boolean, %(canary_mode)s::text,
                                    %(canary_min_searches)s::integer,
                                    %(canary_max_searches)s::integer,
                                    %(watch_searches)s::integer,
                                    %(canary_require)s::text)).collection_id;

-- name: drop_learning_policy
SELECT pyembed.drop_learning_policy(%(collection)s);

-- name: is_writer
SELECT pg_has_role(current_user, 'pyembed_writer', 'MEMBER');

-- name: training_lock
SELECT pg_try_advisory_lock(%(key)s::integer, c.id::integer) FROM pyembed.collections AS c WHERE c.name = %(name)s;

-- name: training_unlock
SELECT pg_advisory_unlock(%(key)s::integer, c.id::integer) FROM pyembed.collections AS c WHERE c.name = %(name)s;

-- name: training_runs_left_running
-- Under the collection's training lock, a run still marked running lost its process.
UPDATE pyembed.training_runs AS r
SET status = 'interrupted',
    error = 'its process stopped before the run finished (resume it with pyembed train '
            || c.name || ' --resume ' || r.id || ')'
FROM pyembed.collections AS c
WHERE c.id = r.collection_id AND c.name = %(name)s AND r.status = 'running'
  AND coalesce(r.data_summary->>'task', 'embedding') = 'embedding'
RETURNING r.id;

-- name: training_run_trigger
UPDATE pyembed.training_runs SET triggered_by = %(trigger)s WHERE id = %(id)s;

-- name: training_run_outcome
UPDATE pyembed.training_runs SET outcome = %(outcome)s, outcome_reason = %(reason)s
WHERE id = %(id)s;
