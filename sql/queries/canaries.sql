-- Named queries of canaries and online metrics.

-- name: canary_status
SELECT collection, canary_id, candidate_version_id, baseline_version_id, mode, share,
       min_searches, max_searches, alpha, started_at, ended_at, decision, decision_reason,
       searches, judged, candidate_wins, baseline_wins, ties, candidate_searches,
       baseline_searches, candidate_mrr, baseline_mrr, p_value, verdict, require
FROM pyembed.canary_status
WHERE (%(collection)s::text IS NULL OR collection = %(collection)s::text)
  AND (NOT %(open_only)s OR ended_at IS NULL)
ORDER BY canary_id DESC
LIMIT %(limit)s;

-- name: start_canary
SELECT pyembed.start_canary(%(collection)s, %(version)s, %(mode)s, %(share)s::real,
                            %(min_searches)s, %(max_searches)s, %(alpha)s::float8, %(reason)s,
                            %(require)s);

-- name: end_canary
SELECT pyembed.end_canary(%(collection)s, %(decision)s, %(reason)s, %(metrics)s);

-- name: canary_version
SELECT pyembed.canary_version(%(collection)s);

-- name: online_metrics
SELECT collection, model_version_id, searches, clicked_searches, clicks_per_search, mrr,
       no_click_share, first_search_at, last_search_at
FROM pyembed.online_metrics
WHERE %(collection)s::text IS NULL OR collection = %(collection)s::text
ORDER BY collection, model_version_id;

-- name: watched_promotion
-- The promotion that made the active version active, unless an online check or another
-- switch came after it.
SELECT d.id, d.from_version_id, d.to_version_id, d.created_at
FROM pyembed.collections AS c
JOIN LATERAL (
    SELECT * FROM pyembed.deployments AS p
    WHERE p.collection_id = c.id AND p.action IN ('promote', 'rollback')
    ORDER BY p.id DESC LIMIT 1) AS d ON d.to_version_id = c.active_version_id
WHERE c.name = %(collection)s AND d.action = 'promote' AND d.from_version_id IS NOT NULL
  AND NOT EXISTS (SELECT FROM pyembed.deployments AS x
                  WHERE x.collection_id = c.id AND x.id > d.id AND x.action = 'online_check'
                    AND x.to_version_id = d.to_version_id);

-- name: reciprocal_ranks
-- 1 / the best rank clicked (0: no click) of the searches a version served alone, the first
-- n searches after `since`, or the last n before `until`.
SELECT coalesce(1.0 / o.best_rank, 0)::float8
FROM pyembed.search_outcomes AS o
JOIN pyembed.collections AS c ON c.id = o.collection_id
WHERE c.name = %(collection)s AND o.model_version_id = %(version)s AND o.canary_id IS NULL
  AND o.created_at > coalesce(%(since)s::timestamptz, '-infinity')
  AND o.created_at < coalesce(%(until)s::timestamptz, 'infinity')
ORDER BY CASE WHEN %(since)s::timestamptz IS NULL THEN o.created_at END DESC, o.created_at
LIMIT %(n)s;

-- name: record_online_check
SELECT pyembed.record_online_check(%(collection)s, %(version)s, %(predecessor)s, %(metrics)s,
                                   %(reason)s);
