-- requires: 0020
-- Canaries: a candidate version served beside the active one on live traffic, by team-draft
-- interleaving or a traffic split, and the online metrics that judge it and every version.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here.

-- The open canary of a collection whose candidate still waits as its pending version (an
-- aborted switch leaves none), or NULL.
CREATE OR REPLACE FUNCTION pyembed._open_canary(c pyembed.collections)
RETURNS pyembed.canaries
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.* FROM pyembed.canaries AS k
    WHERE k.collection_id = c.id AND k.ended_at IS NULL
      AND k.candidate_version_id = c.pending_version_id
$$;

-- The model version an application should embed its queries with too (and pass as
-- candidate_query), while a canary of the collection runs; NULL otherwise.
CREATE OR REPLACE FUNCTION pyembed.canary_version(collection text)
RETURNS bigint
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (pyembed._open_canary(c)).candidate_version_id
    FROM pyembed.collections AS c WHERE c.name = canary_version.collection
$$;

-- Team-draft interleaving of two rankings (keys, best first) into at most k results: the team
-- with fewer picks, a coin toss when even, adds its best result not yet shown. Returns, per
-- result, the position in its team's ranking and the team (0 baseline, 1 candidate); a click
-- then credits the team that placed the row (Radlinski, Kurup and Joachims, 2008).
CREATE OR REPLACE FUNCTION pyembed._interleave(baseline jsonb[], candidate jsonb[], k integer,
                                               OUT positions integer[], OUT teams smallint[])
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    shown jsonb[] := '{}';
    next_at integer[] := ARRAY[1, 1];
    picks integer[] := ARRAY[0, 0];
    team integer;
    lengths integer[] := ARRAY[coalesce(cardinality(baseline), 0),
                               coalesce(cardinality(candidate), 0)];
BEGIN
    positions := '{}';
    teams := '{}';
    WHILE cardinality(shown) < k AND (next_at[1] <= lengths[1] OR next_at[2] <= lengths[2]) LOOP
        IF next_at[1] > lengths[1] THEN
            team := 2;
        ELSIF next_at[2] > lengths[2] THEN
            team := 1;
        ELSIF picks[1] <> picks[2] THEN
            team := CASE WHEN picks[1] < picks[2] THEN 1 ELSE 2 END;
        ELSE
            team := CASE WHEN random() < 0.5 THEN 1 ELSE 2 END;
        END IF;
        -- Its best row not shown yet: rows both rankings hold are shown once.
        WHILE next_at[team] <= lengths[team]
              AND (CASE team WHEN 1 THEN baseline[next_at[team]]
                             ELSE candidate[next_at[team]] END) = ANY (shown) LOOP
            next_at[team] := next_at[team] + 1;
        END LOOP;
        CONTINUE WHEN next_at[team] > lengths[team];
        shown := shown || CASE team WHEN 1 THEN baseline[next_at[team]]
                                    ELSE candidate[next_at[team]] END;
        positions := positions || next_at[team];
        teams := teams || (team - 1)::smallint;
        next_at[team] := next_at[team] + 1;
        picks[team] := picks[team] + 1;
    END LOOP;
END
$$;

-- A search while a canary runs (pyembed.search with candidate_query): interleaved, both
-- versions rank and the results are drafted from both; split, a share of searches is served by
-- the candidate alone. Logged with the canary and, per result, the team that placed it. Without
-- an open canary it is the plain search of the active version.
CREATE OR REPLACE FUNCTION pyembed._canary_search(collection text, query vector,
                                                  candidate_query vector, k integer,
                                                  filter jsonb, ef_search integer,
                                                  probes integer, log boolean, query_text text)
RETURNS TABLE (query_id bigint, rank integer, pk jsonb, chunk text, distance double precision,
               similarity double precision, rerank_score double precision)
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    started timestamptz := clock_timestamp();
    c pyembed.collections := pyembed.collection(collection);
    served pyembed.collections;
    canary pyembed.canaries := pyembed._open_canary(c);
    base record;
    cand record;
    drafted record;
    logged_query @extschema:vector@.vector := query;
    pks jsonb[];
    chunk_seqs integer[];
    chunks text[];
    distances double precision[];
    teams smallint[];
    logged_id bigint;
BEGIN
    IF canary.id IS NULL THEN
        RETURN QUERY SELECT * FROM pyembed.search(collection, query, k, filter, ef_search, probes,
                                                  log, query_text);
        RETURN;
    END IF;
    PERFORM pyembed._check_search(c, query, k, filter);
    served := c;
    served.active_version_id := canary.candidate_version_id;
    served.model_id := (SELECT v.model_id FROM pyembed.model_versions AS v
                        WHERE v.id = canary.candidate_version_id);
    BEGIN
        PERFORM pyembed._check_search(served, candidate_query, k, NULL);
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'candidate_query does not fit the canary''s model version %: %',
            canary.candidate_version_id, SQLERRM
            USING ERRCODE = 'data_exception',
                  HINT = 'embed the query with the version pyembed.canary_version(collection) names';
    END;
    -- An end of the canary committed after we read it may drop the candidate's store under
    -- this search: it is then answered by the active version alone, never failed.
    BEGIN
    IF canary.mode = 'split' THEN
        IF random() < canary.share THEN
            logged_query := candidate_query;
        ELSE
            served := c;
        END IF;
        SELECT * INTO base FROM pyembed._nearest_hits(served, logged_query, k, filter,
                                                      ef_search, probes);
        pks := base.pks[1:k];
        chunk_seqs := base.chunk_seqs[1:k];
        chunks := base.chunks[1:k];
        distances := base.distances[1:k];
        teams := array_fill(CASE WHEN served.active_version_id = c.active_version_id THEN 0
                                 ELSE 1 END::smallint, ARRAY[cardinality(pks)]);
    ELSE
        served := c;
        SELECT * INTO base FROM pyembed._nearest_hits(c, query, k, filter, ef_search, probes);
        c.active_version_id := canary.candidate_version_id;
        SELECT * INTO cand FROM pyembed._nearest_hits(c, candidate_query, k, filter, ef_search,
                                                      probes);
        c.active_version_id := served.active_version_id;
        SELECT * INTO drafted FROM pyembed._interleave(base.pks[1:k], cand.pks[1:k], k);
        SELECT coalesce(array_agg(CASE d.team WHEN 0 THEN base.pks[d.pos] ELSE cand.pks[d.pos] END
                                  ORDER BY d.ord), '{}'),
               coalesce(array_agg(CASE d.team WHEN 0 THEN base.chunk_seqs[d.pos]
                                  ELSE cand.chunk_seqs[d.pos] END ORDER BY d.ord), '{}'),
               coalesce(array_agg(CASE d.team WHEN 0 THEN base.chunks[d.pos]
                                  ELSE cand.chunks[d.pos] END ORDER BY d.ord), '{}'),
               coalesce(array_agg(CASE d.team WHEN 0 THEN base.distances[d.pos]
                                  ELSE cand.distances[d.pos] END ORDER BY d.ord), '{}')
        INTO pks, chunk_seqs, chunks, distances
        FROM unnest(drafted.positions, drafted.teams) WITH ORDINALITY AS d(pos, team, ord);
        teams := drafted.teams;
    END IF;
    EXCEPTION WHEN undefined_table OR undefined_function THEN
        IF pyembed._open_canary(pyembed.collection(collection)) IS NOT DISTINCT FROM canary THEN
            RAISE;  -- the canary runs on: its store is missing for another reason
        END IF;
        RETURN QUERY SELECT * FROM pyembed.search(collection, query, k, filter, ef_search, probes,
                                                  log, query_text);
        RETURN;
    END;
    logged_id := pyembed._log_search(
        served, log, logged_query, query_text, k,
        jsonb_build_object('filter', filter, 'ef_search', ef_search, 'probes', probes),
        pks, chunk_seqs, distances, started, NULL, NULL, canary.id, teams);
    RETURN QUERY
    SELECT logged_id, r.ord::int, r.pk, r.chunk, r.distance,
           pyembed._similarity(c.distance, r.distance), NULL::float8
    FROM unnest(pks, chunks, distances) WITH ORDINALITY AS r(pk, chunk, distance, ord)
    ORDER BY r.ord;
END
$$;

-- Put the pending version of a collection on live traffic beside the active one. Its switch
-- must be ready to finish (backfill embedded, nothing failed): `pyembed canary start` begins
-- the switch, embeds and indexes it first. Returns the canary's id. A writer's function.
CREATE OR REPLACE FUNCTION pyembed.start_canary(
    collection_name text,
    version_id bigint,
    mode text DEFAULT 'interleave',
    share real DEFAULT 0.5,
    min_searches integer DEFAULT 200,
    max_searches integer DEFAULT 2000,
    alpha double precision DEFAULT 0.05,
    reason text DEFAULT '',
    require text DEFAULT 'better')
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed._lock_collection(collection_name);
    waiting bigint;
    new_id bigint;
BEGIN
    IF mode IS NULL OR mode NOT IN ('interleave', 'split') THEN
        RAISE EXCEPTION 'a canary''s mode is ''interleave'' or ''split'', not %',
            coalesce(quote_literal(mode), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'interleave: every search drafts from both versions (the most sensitive); '
                         'split: a share of searches is served by the candidate alone';
    END IF;
    IF require IS NULL OR require NOT IN ('better', 'not_worse') THEN
        RAISE EXCEPTION 'a canary requires ''better'' or ''not_worse'', not %',
            coalesce(quote_literal(require), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'better: promote only when users prefer the candidate by more than noise; '
                         'not_worse: promote at min_searches unless they prefer the active version';
    END IF;
    IF share IS NULL OR NOT (share > 0 AND share < 1) OR min_searches IS NULL OR min_searches < 1
       OR max_searches IS NULL OR max_searches < min_searches
       OR alpha IS NULL OR NOT (alpha > 0 AND alpha < 1) THEN
        RAISE EXCEPTION 'canary settings out of range: share %, min_searches %, max_searches %, alpha %',
            share, min_searches, max_searches, alpha
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'share and alpha between 0 and 1, min_searches at least 1, max_searches at least min_searches';
    END IF;
    IF EXISTS (SELECT FROM pyembed.canaries AS k WHERE k.collection_id = c.id AND k.ended_at IS NULL) THEN
        RAISE EXCEPTION 'collection "%" already runs a canary', c.name
            USING ERRCODE = 'lock_not_available',
                  HINT = format('end it first: SELECT pyembed.end_canary(%L, ''aborted'')', c.name);
    END IF;
    IF c.pending_version_id IS DISTINCT FROM version_id THEN
        RAISE EXCEPTION 'model version % is not the pending version of "%"', version_id, c.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('`pyembed canary start %s %s` begins the switch, embeds and indexes it, then starts the canary',
                                c.name, version_id);
    END IF;
    SELECT count(*) INTO waiting FROM pyembed.queue AS q
    WHERE q.collection_id = c.id AND q.model_version_id = version_id;
    waiting := waiting + (SELECT count(*) FROM pyembed.failed_items AS f
                          WHERE f.collection_id = c.id AND f.model_version_id = version_id);
    IF waiting > 0 THEN
        RAISE EXCEPTION 'model version % of "%" still has % rows to embed or failed', version_id,
            c.name, waiting
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'run workers until pyembed.switch_backlog(collection) is 0, and retry failed rows';
    END IF;
    INSERT INTO pyembed.canaries (collection_id, candidate_version_id, baseline_version_id, mode,
                                  share, min_searches, max_searches, alpha, started_by, reason,
                                  require)
    VALUES (c.id, version_id, c.active_version_id, mode, share, min_searches, max_searches, alpha,
            pyembed._caller(), coalesce(reason, ''), require)
    RETURNING id INTO new_id;
    INSERT INTO pyembed.deployments (collection_id, action, from_version_id, to_version_id,
                                     reason, metrics, performed_by)
    VALUES (c.id, 'canary_started', c.active_version_id, version_id, coalesce(reason, ''),
            jsonb_build_object('canary_id', new_id, 'mode', mode, 'share', share,
                               'min_searches', min_searches, 'max_searches', max_searches,
                               'require', require),
            pyembed._caller());
    RETURN new_id;
END
$$;

-- End the collection's canary: promoted finishes its switch (the candidate becomes active);
-- rejected, inconclusive or aborted abort it (its store goes). Returns the canary's id.
CREATE OR REPLACE FUNCTION pyembed.end_canary(
    collection_name text,
    decision text,
    reason text DEFAULT '',
    metrics jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed._lock_collection(collection_name);
    canary pyembed.canaries;
BEGIN
    IF decision IS NULL OR decision NOT IN ('promoted', 'rejected', 'inconclusive', 'aborted') THEN
        RAISE EXCEPTION 'a canary ends promoted, rejected, inconclusive or aborted, not %',
            coalesce(quote_literal(decision), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO canary FROM pyembed.canaries AS k
    WHERE k.collection_id = c.id AND k.ended_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'collection "%" runs no canary', c.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'SELECT * FROM pyembed.canary_status shows the canaries and how they ended';
    END IF;
    UPDATE pyembed.canaries
    SET ended_at = now(), decision = end_canary.decision,
        decision_reason = coalesce(end_canary.reason, ''), metrics = coalesce(end_canary.metrics, '{}')
    WHERE id = canary.id;
    INSERT INTO pyembed.deployments (collection_id, action, from_version_id, to_version_id,
                                     reason, metrics, performed_by)
    VALUES (c.id, 'canary_ended', canary.baseline_version_id, canary.candidate_version_id,
            decision || ': ' || coalesce(reason, ''),
            coalesce(metrics, '{}') || jsonb_build_object('canary_id', canary.id),
            pyembed._caller());
    IF c.pending_version_id = canary.candidate_version_id THEN
        IF decision = 'promoted' THEN
            PERFORM pyembed.finish_switch(c.name, 'canary ' || canary.id || ': ' || coalesce(reason, ''),
                                          coalesce(metrics, '{}'));
        ELSE
            PERFORM pyembed.abort_switch(c.name, 'canary ' || canary.id || ' ' || decision);
        END IF;
    END IF;
    RETURN canary.id;
END
$$;

-- Two-sided exact sign test: the chance of a split at least this uneven of wins + losses fair
-- coin tosses.
CREATE OR REPLACE FUNCTION pyembed._sign_test(wins bigint, losses bigint)
RETURNS double precision
LANGUAGE plpgsql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint := coalesce(wins, 0) + coalesce(losses, 0);
    tail double precision := 0;
    log_choose double precision := 0;  -- ln C(n, i), from C(n, 0) = 1
BEGIN
    IF n = 0 THEN
        RETURN 1;
    END IF;
    FOR i IN 0 .. least(wins, losses) LOOP
        tail := tail + exp(log_choose - n * ln(2));
        log_choose := log_choose + ln(n - i) - ln(i + 1);
    END LOOP;
    RETURN least(1, 2 * tail);
END
$$;

-- Two-sided p-value of a standard normal z (erfc by Abramowitz and Stegun 7.1.26, error below
-- 1.5e-7: PostgreSQL has erfc only from 16 on).
CREATE OR REPLACE FUNCTION pyembed._normal_p(z double precision)
RETURNS double precision
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN z IS NULL OR z = 'NaN' THEN NULL ELSE t * exp(-x * x) * (0.254829592
               + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))) END
    FROM (SELECT abs(z) / sqrt(2) AS x) AS a, LATERAL (SELECT 1 / (1 + 0.3275911 * a.x) AS t) AS b
$$;

-- Per logged search: how many positive signals (clicks, purchases) it got, the best rank
-- among them, and in an interleaved search how many each team earned.
CREATE OR REPLACE VIEW pyembed.search_outcomes AS
SELECT q.id AS query_id, q.collection_id, q.model_version_id, q.canary_id, q.created_at,
       count(f.id) AS signals,
       min(r.pos) AS best_rank,
       count(f.id) FILTER (WHERE q.result_teams[r.pos] = 0) AS baseline_signals,
       count(f.id) FILTER (WHERE q.result_teams[r.pos] = 1) AS candidate_signals,
       q.result_teams IS NOT NULL AND 0 = ANY (q.result_teams) AND 1 = ANY (q.result_teams)
           AS interleaved
FROM pyembed.query_log AS q
LEFT JOIN pyembed.feedback AS f ON f.query_id = q.id AND f.weight > 0
LEFT JOIN LATERAL (SELECT array_position(q.result_pks, f.pk) AS pos) AS r ON f.id IS NOT NULL
-- Grouped by every column it shows, so a condition on one (canary_id) filters the log first.
GROUP BY q.id, q.collection_id, q.model_version_id, q.canary_id, q.created_at, q.result_teams;
COMMENT ON VIEW pyembed.search_outcomes IS
    'each logged search: its positive signals, the best rank clicked, and per-team credit';

-- Online metrics of every version, from the searches it served alone: searches, clicks per
-- search, mean reciprocal rank of the best clicked row (0 for no click), the share without
-- a click.
CREATE OR REPLACE VIEW pyembed.online_metrics AS
SELECT c.name AS collection, o.model_version_id,
       count(*) AS searches,
       count(*) FILTER (WHERE o.signals > 0) AS clicked_searches,
       avg(o.signals)::double precision AS clicks_per_search,
       avg(coalesce(1.0 / o.best_rank, 0))::double precision AS mrr,
       avg((o.signals = 0)::int)::double precision AS no_click_share,
       min(o.created_at) AS first_search_at,
       max(o.created_at) AS last_search_at
FROM pyembed.search_outcomes AS o
JOIN pyembed.collections AS c ON c.id = o.collection_id
WHERE NOT o.interleaved
GROUP BY c.name, o.model_version_id;
COMMENT ON VIEW pyembed.online_metrics IS
    'per version, from the searches it served alone: clicks per search, MRR, no-click share';

-- Every canary and its score: interleaved, the searches where the candidate's rows earned
-- more clicks (wins), fewer (losses) or as many (ties), with the sign test's p-value; split,
-- each arm's searches and MRR with a z-test's. verdict, once min_searches are judged: baseline
-- when users prefer it with p < alpha; candidate when they prefer the candidate so (require
-- better) or do not prefer the baseline (require not_worse); inconclusive at max_searches;
-- else undecided.
CREATE OR REPLACE VIEW pyembed.canary_status AS
SELECT c.name AS collection, k.id AS canary_id, k.candidate_version_id, k.baseline_version_id,
       k.mode, k.share, k.min_searches, k.max_searches, k.alpha, k.started_at, k.ended_at,
       k.decision, k.decision_reason, s.searches, s.judged, s.candidate_wins, s.baseline_wins,
       s.ties, s.candidate_searches, s.baseline_searches, s.candidate_mrr, s.baseline_mrr,
       p.p_value,
       CASE WHEN s.judged < k.min_searches THEN 'undecided'
            WHEN p.p_value < k.alpha AND p.better < 0 THEN 'baseline'
            WHEN k.require = 'not_worse' OR (p.p_value < k.alpha AND p.better > 0) THEN 'candidate'
            WHEN s.judged >= k.max_searches THEN 'inconclusive'
            ELSE 'undecided' END AS verdict,
       k.require
FROM pyembed.canaries AS k
JOIN pyembed.collections AS c ON c.id = k.collection_id
CROSS JOIN LATERAL (
    SELECT count(*) AS searches,
           CASE k.mode WHEN 'interleave' THEN count(*) FILTER (WHERE o.signals > 0)
                       ELSE count(*) END AS judged,
           count(*) FILTER (WHERE o.candidate_signals > o.baseline_signals) AS candidate_wins,
           count(*) FILTER (WHERE o.candidate_signals < o.baseline_signals) AS baseline_wins,
           count(*) FILTER (WHERE o.signals > 0
                              AND o.candidate_signals = o.baseline_signals) AS ties,
           count(*) FILTER (WHERE o.model_version_id = k.candidate_version_id) AS candidate_searches,
           count(*) FILTER (WHERE o.model_version_id <> k.candidate_version_id) AS baseline_searches,
           avg(coalesce(1.0 / o.best_rank, 0))
               FILTER (WHERE o.model_version_id = k.candidate_version_id)::double precision
               AS candidate_mrr,
           avg(coalesce(1.0 / o.best_rank, 0))
               FILTER (WHERE o.model_version_id <> k.candidate_version_id)::double precision
               AS baseline_mrr,
           var_samp(coalesce(1.0 / o.best_rank, 0))
               FILTER (WHERE o.model_version_id = k.candidate_version_id)::double precision
               AS candidate_var,
           var_samp(coalesce(1.0 / o.best_rank, 0))
               FILTER (WHERE o.model_version_id <> k.candidate_version_id)::double precision
               AS baseline_var
    FROM pyembed.search_outcomes AS o
    WHERE o.canary_id = k.id) AS s
CROSS JOIN LATERAL (
    SELECT CASE WHEN k.mode = 'interleave' THEN pyembed._sign_test(s.candidate_wins, s.baseline_wins)
                -- No spread in either arm: any difference is certain, none is none.
                WHEN se.value = 0 THEN CASE WHEN s.candidate_mrr = s.baseline_mrr THEN 1 ELSE 0 END
                ELSE pyembed._normal_p((s.candidate_mrr - s.baseline_mrr) / se.value)
                END AS p_value,
           CASE k.mode WHEN 'interleave' THEN sign(s.candidate_wins - s.baseline_wins)
                ELSE sign(s.candidate_mrr - s.baseline_mrr) END AS better
    FROM (SELECT sqrt(s.candidate_var / nullif(s.candidate_searches, 0)
                      + s.baseline_var / nullif(s.baseline_searches, 0)) AS value) AS se) AS p;
COMMENT ON VIEW pyembed.canary_status IS
    'every canary: interleaving wins and losses (or split MRR), p-value, verdict and decision';

-- Record the result of watching a promoted version's online metrics (kept, or rolled back:
-- the rollback is its own row). A writer's function; deployments is append-only.
CREATE OR REPLACE FUNCTION pyembed.record_online_check(collection_name text, version_id bigint,
                                                       predecessor_id bigint, metrics jsonb,
                                                       reason text DEFAULT '')
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(collection_name);
    new_id bigint;
BEGIN
    IF metrics IS NULL OR jsonb_typeof(metrics) <> 'object' THEN
        RAISE EXCEPTION 'metrics must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pyembed.deployments (collection_id, action, from_version_id, to_version_id,
                                     reason, metrics, performed_by)
    VALUES (c.id, 'online_check', predecessor_id, version_id, coalesce(reason, ''), metrics,
            pyembed._caller())
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
