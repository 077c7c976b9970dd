-- requires: 0019
-- Learning policies: a collection trains by itself when enough new feedback came in.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here.

-- The training options a policy may set, with their types and ranges. Python's TrainOptions
-- checks them again; here a DBA's typo fails at once instead of at the next run.
CREATE OR REPLACE FUNCTION pyembed._check_train_options(options jsonb)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key text;
    value jsonb;
    number double precision;
    losses text[] := ARRAY['mnrl', 'cached_mnrl', 'matryoshka'];
    known text[] := ARRAY['loss', 'epochs', 'batch_size', 'learning_rate', 'warmup_ratio',
                          'negatives', 'min_signals', 'held_out', 'max_seq_length',
                          'mini_batch_size'];
BEGIN
    IF options IS NULL OR jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'train_options must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. ''{"epochs": 1}''';
    END IF;
    FOR key, value IN SELECT * FROM jsonb_each(options) LOOP
        IF NOT key = ANY (known) THEN
            RAISE EXCEPTION 'unknown training option "%"', key
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'known options: ' || array_to_string(known, ', ');
        END IF;
        IF key = 'loss' THEN
            IF jsonb_typeof(value) <> 'string' OR NOT value #>> '{}' = ANY (losses) THEN
                RAISE EXCEPTION 'training option loss is %, not a loss that learns from the log', value
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'one of ' || array_to_string(losses, ', ');
            END IF;
        ELSIF key = 'negatives' THEN
            IF jsonb_typeof(value) <> 'boolean' THEN
                RAISE EXCEPTION 'training option negatives is %, not true or false', value
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSE
            IF jsonb_typeof(value) <> 'number' THEN
                RAISE EXCEPTION 'training option % is %, not a number', key, value
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            number := (value #>> '{}')::double precision;
            IF (key IN ('batch_size', 'min_signals', 'max_seq_length', 'mini_batch_size')
                AND number <> trunc(number))
               OR (key = 'epochs' AND NOT (number > 0 AND number <= 20))
               OR (key = 'batch_size' AND NOT number BETWEEN 2 AND 4096)
               OR (key = 'learning_rate' AND NOT (number > 0 AND number < 1))
               OR (key = 'warmup_ratio' AND NOT (number >= 0 AND number < 1))
               OR (key = 'min_signals' AND number < 1)
               OR (key = 'held_out' AND NOT (number > 0 AND number <= 0.9))
               OR (key = 'max_seq_length' AND NOT number BETWEEN 8 AND 8192)
               OR (key = 'mini_batch_size' AND NOT number BETWEEN 1 AND 4096) THEN
                RAISE EXCEPTION 'training option % = % is out of range', key, value
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = CASE key
                              WHEN 'epochs' THEN 'epochs: more than 0, at most 20'
                              WHEN 'batch_size' THEN 'batch_size: an integer from 2 to 4096'
                              WHEN 'learning_rate' THEN 'learning_rate: between 0 and 1, e.g. 3e-5'
                              WHEN 'warmup_ratio' THEN 'warmup_ratio: from 0 to below 1'
                              WHEN 'min_signals' THEN 'min_signals: an integer of at least 1'
                              WHEN 'held_out' THEN 'held_out: a share above 0, at most 0.9 (the gate needs held-out queries)'
                              WHEN 'max_seq_length' THEN 'max_seq_length: an integer from 8 to 8192'
                              ELSE 'mini_batch_size: an integer from 1 to 4096' END;
            END IF;
        END IF;
    END LOOP;
END
$$;

-- Set (or change) a collection's learning policy; an argument left NULL keeps its current
-- value (a new policy's default). Returns the policy. A writer's function: it decides what
-- workers train and promote.
CREATE OR REPLACE FUNCTION pyembed.set_learning_policy(
    collection_name text,
    min_feedback integer DEFAULT NULL,
    min_interval interval DEFAULT NULL,
    train_options jsonb DEFAULT NULL,
    eval_sets text[] DEFAULT NULL,
    after_training text DEFAULT NULL,
    enabled boolean DEFAULT NULL,
    canary_mode text DEFAULT NULL,
    canary_min_searches integer DEFAULT NULL,
    canary_max_searches integer DEFAULT NULL,
    watch_searches integer DEFAULT NULL,
    canary_require text DEFAULT NULL)
RETURNS pyembed.learning_policies
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed._lock_collection(collection_name);
    missing text;
    result pyembed.learning_policies;
BEGIN
    IF min_feedback IS NOT NULL AND min_feedback < 1 THEN
        RAISE EXCEPTION 'min_feedback must be at least 1, not %', min_feedback
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'the number of new feedback signals that makes a training run due';
    END IF;
    IF min_interval IS NOT NULL AND min_interval < interval '0' THEN
        RAISE EXCEPTION 'min_interval must not be negative, not %', min_interval
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. interval ''1 hour''';
    END IF;
    IF after_training IS NOT NULL AND after_training NOT IN ('nothing', 'promote', 'canary') THEN
        RAISE EXCEPTION 'after_training must be ''nothing'', ''promote'' or ''canary'', not %', quote_literal(after_training)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'promote: through the significance gate; canary: through the gate, then '
                         'on live traffic beside the active version; nothing: register and evaluate only';
    END IF;
    IF canary_mode IS NOT NULL AND canary_mode NOT IN ('interleave', 'split') THEN
        RAISE EXCEPTION 'canary_mode must be ''interleave'' or ''split'', not %', quote_literal(canary_mode)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF canary_require IS NOT NULL AND canary_require NOT IN ('better', 'not_worse') THEN
        RAISE EXCEPTION 'canary_require must be ''better'' or ''not_worse'', not %', quote_literal(canary_require)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'not_worse (the default after the offline gate): promote unless users prefer the active version';
    END IF;
    IF canary_min_searches < 1 OR canary_max_searches < 1 OR watch_searches < 0 THEN
        RAISE EXCEPTION 'canary_min_searches and canary_max_searches must be at least 1 and watch_searches at least 0'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'watch_searches 0 turns the watch of promoted versions off';
    END IF;
    IF train_options IS NOT NULL THEN
        PERFORM pyembed._check_train_options(train_options);
    END IF;
    SELECT wanted.set_name INTO missing FROM unnest(eval_sets) AS wanted (set_name)
    WHERE wanted.set_name IS NULL OR NOT EXISTS (
        SELECT FROM pyembed.eval_sets AS s
        WHERE s.collection_id = c.id AND s.name = wanted.set_name)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'collection "%" has no eval set %', c.name, coalesce(quote_literal(missing), 'NULL')
            USING ERRCODE = 'undefined_object',
                  HINT = 'import it first (pyembed evalset import-jsonl or import-beir), or leave eval_sets empty to gate on each run''s held-out queries';
    END IF;
    INSERT INTO pyembed.learning_policies AS p (collection_id, updated_by)
    VALUES (c.id, pyembed._caller())
    ON CONFLICT (collection_id) DO UPDATE SET updated_by = excluded.updated_by, updated_at = now();
    UPDATE pyembed.learning_policies AS p
    SET min_feedback = coalesce(set_learning_policy.min_feedback, p.min_feedback),
        min_interval = coalesce(set_learning_policy.min_interval, p.min_interval),
        train_options = coalesce(set_learning_policy.train_options, p.train_options),
        eval_sets = coalesce(set_learning_policy.eval_sets, p.eval_sets),
        after_training = coalesce(set_learning_policy.after_training, p.after_training),
        enabled = coalesce(set_learning_policy.enabled, p.enabled)
    WHERE p.collection_id = c.id
    RETURNING * INTO result;
    -- The canary settings are columns from 0020 on: named only when given.
    IF num_nonnulls(canary_mode, canary_min_searches, canary_max_searches, watch_searches,
                    canary_require) > 0 THEN
        EXECUTE 'UPDATE pyembed.learning_policies AS p'
                ' SET canary_mode = coalesce($2, p.canary_mode),'
                ' canary_min_searches = coalesce($3, p.canary_min_searches),'
                ' canary_max_searches = coalesce($4, p.canary_max_searches),'
                ' watch_searches = coalesce($5, p.watch_searches),'
                ' canary_require = coalesce($6, p.canary_require)'
                ' WHERE p.collection_id = $1 RETURNING *'
        INTO result USING c.id, canary_mode, canary_min_searches, canary_max_searches, watch_searches,
                          canary_require;
    END IF;
    RETURN result;
END
$$;

-- Remove a collection's learning policy (its runs stay recorded); false when it had none.
CREATE OR REPLACE FUNCTION pyembed.drop_learning_policy(collection_name text)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed._lock_collection(collection_name);
BEGIN
    DELETE FROM pyembed.learning_policies WHERE collection_id = c.id;
    RETURN FOUND;
END
$$;

-- Each policy and whether a run is due: enough feedback since the data of the last finished
-- run (a failed run leaves the count as it was), and the interval passed since the last run
-- started, whatever became of it (so a failing run is retried at most once per interval).
CREATE OR REPLACE VIEW pyembed.learning_status AS
SELECT c.name AS collection,
       c.id AS collection_id,
       p.enabled,
       p.min_feedback,
       p.min_interval,
       p.train_options,
       p.eval_sets,
       p.after_training,
       last.id AS last_run_id,
       last.status AS last_run_status,
       last.triggered_by AS last_run_trigger,
       last.outcome AS last_outcome,
       last.outcome_reason AS last_outcome_reason,
       last.started_at AS last_run_started_at,
       fb.signals AS new_feedback,
       greatest(last.started_at + p.min_interval, now()) AS next_run_not_before,
       p.enabled AND fb.signals >= p.min_feedback
           AND (last.started_at IS NULL OR last.started_at + p.min_interval <= now()) AS due,
       -- The canary settings are columns from 0020 on, read so that this view stands before.
       coalesce(to_jsonb(p)->>'canary_mode', 'interleave') AS canary_mode,
       coalesce((to_jsonb(p)->>'canary_min_searches')::integer, 200) AS canary_min_searches,
       coalesce((to_jsonb(p)->>'canary_max_searches')::integer, 2000) AS canary_max_searches,
       coalesce((to_jsonb(p)->>'watch_searches')::integer, 0) AS watch_searches,
       coalesce(to_jsonb(p)->>'canary_require', 'not_worse') AS canary_require
FROM pyembed.learning_policies AS p
JOIN pyembed.collections AS c ON c.id = p.collection_id
LEFT JOIN LATERAL (
    SELECT r.id, r.status, r.triggered_by, r.outcome, r.outcome_reason, r.started_at
    FROM pyembed.training_runs AS r
    WHERE r.collection_id = c.id AND coalesce(r.data_summary->>'task', 'embedding') = 'embedding'
    ORDER BY r.id DESC LIMIT 1) AS last ON true
LEFT JOIN LATERAL (
    SELECT max(r.started_at) AS started_at
    FROM pyembed.training_runs AS r
    WHERE r.collection_id = c.id AND r.status = 'done'
      AND coalesce(r.data_summary->>'task', 'embedding') = 'embedding') AS done ON true
CROSS JOIN LATERAL (
    SELECT count(*) AS signals
    FROM pyembed.feedback AS f JOIN pyembed.query_log AS q ON q.id = f.query_id
    WHERE q.collection_id = c.id AND f.created_at > coalesce(done.started_at, '-infinity')) AS fb;
COMMENT ON VIEW pyembed.learning_status IS
    'each learning policy, its last run and decision, the feedback since, and whether a run is due';
