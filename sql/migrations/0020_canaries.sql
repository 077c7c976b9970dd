-- 0020: canaries, a candidate version compared with the active one on live traffic. FROZEN
-- once released.
-- A canary holds a switch open: the candidate's store is filled and indexed (the pending
-- version), and searches that bring a query vector for it are served by both versions,
-- interleaved (team draft: each result is a pick of one version's ranking) or split (a share
-- of searches wholly by the candidate). Clicks then say which version users prefer. It ends
-- promoted (the switch finishes), rejected or inconclusive (the switch is aborted), or aborted
-- (by hand). One open canary per collection.
CREATE TABLE pyembed.canaries (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id        bigint NOT NULL REFERENCES pyembed.collections ON DELETE CASCADE,
    candidate_version_id bigint NOT NULL REFERENCES pyembed.model_versions ON DELETE RESTRICT,
    baseline_version_id  bigint NOT NULL REFERENCES pyembed.model_versions ON DELETE RESTRICT,
    mode                 text NOT NULL DEFAULT 'interleave' CHECK (mode IN ('interleave', 'split')),
    share                real NOT NULL DEFAULT 0.5 CHECK (share > 0 AND share < 1),
    min_searches         integer NOT NULL DEFAULT 200 CHECK (min_searches >= 1),
    max_searches         integer NOT NULL DEFAULT 2000,
    alpha                double precision NOT NULL DEFAULT 0.05 CHECK (alpha > 0 AND alpha < 1),
    -- better: promoted only when users prefer it by more than noise; not_worse: promoted at
    -- min_searches unless they prefer the baseline by more than noise (after an offline gate).
    require              text NOT NULL DEFAULT 'better' CHECK (require IN ('better', 'not_worse')),
    started_by           text NOT NULL DEFAULT current_user,
    started_at           timestamptz NOT NULL DEFAULT now(),
    reason               text NOT NULL DEFAULT '',
    ended_at             timestamptz,
    decision             text CHECK (decision IN ('promoted', 'rejected', 'inconclusive', 'aborted')),
    decision_reason      text,
    metrics              jsonb NOT NULL DEFAULT '{}'::jsonb,
    CHECK (max_searches >= min_searches),
    CHECK ((ended_at IS NULL) = (decision IS NULL))
);
CREATE UNIQUE INDEX canaries_one_open ON pyembed.canaries (collection_id) WHERE ended_at IS NULL;
CREATE INDEX canaries_by_collection ON pyembed.canaries (collection_id, id);
COMMENT ON TABLE pyembed.canaries IS
    'candidate versions served beside the active one on live traffic, and what became of them';

-- Which canary a search belonged to, and for an interleaved one which version contributed
-- each result (0 the baseline, 1 the candidate), aligned with result_pks.
ALTER TABLE pyembed.query_log
    ADD COLUMN canary_id bigint,
    ADD COLUMN result_teams smallint[],
    ADD CONSTRAINT query_log_teams_aligned
        CHECK (result_teams IS NULL OR cardinality(result_teams) = cardinality(result_pks));
CREATE INDEX query_log_by_canary ON pyembed.query_log (canary_id) WHERE canary_id IS NOT NULL;

-- Canaries and online checks are part of a collection's history.
ALTER TABLE pyembed.deployments DROP CONSTRAINT deployments_action_check,
    ADD CONSTRAINT deployments_action_check
        CHECK (action IN ('switch_started', 'promote', 'switch_aborted', 'rollback', 'retire',
                          'canary_started', 'canary_ended', 'online_check'));

-- A policy may put its result on live traffic first, and watch a promoted version's online
-- metrics afterwards.
ALTER TABLE pyembed.learning_policies
    DROP CONSTRAINT learning_policies_after_training_check,
    ADD CONSTRAINT learning_policies_after_training_check
        CHECK (after_training IN ('nothing', 'promote', 'canary')),
    ADD COLUMN canary_mode text NOT NULL DEFAULT 'interleave'
        CHECK (canary_mode IN ('interleave', 'split')),
    ADD COLUMN canary_min_searches integer NOT NULL DEFAULT 200 CHECK (canary_min_searches >= 1),
    ADD COLUMN canary_max_searches integer NOT NULL DEFAULT 2000,
    ADD COLUMN canary_require text NOT NULL DEFAULT 'not_worse'
        CHECK (canary_require IN ('better', 'not_worse')),
    ADD COLUMN watch_searches integer NOT NULL DEFAULT 0 CHECK (watch_searches >= 0),
    ADD CHECK (canary_max_searches >= canary_min_searches);
COMMENT ON COLUMN pyembed.learning_policies.watch_searches IS
    'after a promotion, compare this many searches of the new version with as many of its '
    'predecessor''s and roll back when it is worse by more than noise (0: no watch)';

ALTER TABLE pyembed.training_runs DROP CONSTRAINT training_runs_outcome_check,
    ADD CONSTRAINT training_runs_outcome_check
        CHECK (outcome IN ('promoted', 'refused', 'kept', 'canary'));
