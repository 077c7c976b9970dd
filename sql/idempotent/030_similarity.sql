-- requires: 0005
-- Similarity functions of any dimension, and ranking search results by domain-aware similarity.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here.

-- Cosine similarity in [-1, 1]; NULL when either vector is all zeros (no direction).
CREATE OR REPLACE FUNCTION pyembed.cosine_similarity(a vector, b vector)
RETURNS double precision
LANGUAGE sql
IMMUTABLE
STRICT
PARALLEL SAFE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT nullif(1::float8 - (a OPERATOR(@extschema:vector@.<=>) b), 'NaN'::float8)
$$;

-- Cosine similarity with a non-negative weight per dimension:
-- sum(w·a·b) / (sqrt(sum(w·a²)) · sqrt(sum(w·b²))).
CREATE OR REPLACE FUNCTION pyembed.weighted_cosine_similarity(a vector, b vector, weights vector)
RETURNS double precision
LANGUAGE plpgsql
IMMUTABLE
STRICT
PARALLEL SAFE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wa @extschema:vector@.vector;
    denominator double precision;
BEGIN
    IF @extschema:vector@.vector_dims(weights) <> @extschema:vector@.vector_dims(a)
       OR @extschema:vector@.vector_dims(a) <> @extschema:vector@.vector_dims(b) THEN
        RAISE EXCEPTION 'vectors of % and % dimensions with % weights', @extschema:vector@.vector_dims(a),
            @extschema:vector@.vector_dims(b), @extschema:vector@.vector_dims(weights)
            USING ERRCODE = 'data_exception', HINT = 'give one weight per dimension';
    END IF;
    IF EXISTS (SELECT FROM unnest(weights::real[]) AS w WHERE w < 0) THEN
        RAISE EXCEPTION 'weights must not be negative' USING ERRCODE = 'data_exception';
    END IF;
    wa := a OPERATOR(@extschema:vector@.*) weights;
    denominator := sqrt(-(wa OPERATOR(@extschema:vector@.<#>) a))
                   * sqrt(-((b OPERATOR(@extschema:vector@.*) weights) OPERATOR(@extschema:vector@.<#>) b));
    IF denominator = 0 THEN
        RETURN NULL;
    END IF;
    RETURN -(wa OPERATOR(@extschema:vector@.<#>) b) / denominator;
END
$$;

-- The boost two items earn from pyembed.similarity_boosts: the largest matching same-domain
-- rule, plus the largest related-domains rule for the pair, plus the largest same-type rule.
CREATE OR REPLACE FUNCTION pyembed.domain_boost(domain_a text, domain_b text, type_a text,
                                                type_b text)
RETURNS double precision
LANGUAGE sql
STABLE
PARALLEL SAFE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT max(b.boost) FROM pyembed.similarity_boosts b
                     WHERE b.rule = 'same_domain' AND f.domain_a = f.domain_b
                       AND (b.domain_a IS NULL OR b.domain_a = f.domain_a)), 0)
         + coalesce((SELECT max(b.boost) FROM pyembed.similarity_boosts b
                     WHERE b.rule = 'related_domains' AND f.domain_a <> f.domain_b
                       AND least(b.domain_a, b.domain_b) = least(f.domain_a, f.domain_b)
                       AND greatest(b.domain_a, b.domain_b) = greatest(f.domain_a, f.domain_b)), 0)
         + coalesce((SELECT max(b.boost) FROM pyembed.similarity_boosts b
                     WHERE b.rule = 'same_content_type' AND f.type_a = f.type_b
                       AND (b.content_type IS NULL OR b.content_type = f.type_a)), 0)
    -- Parameters are named through f: bare names would mean the table's columns.
    FROM (SELECT domain_boost.domain_a, domain_boost.domain_b, domain_boost.type_a,
                 domain_boost.type_b) AS f
$$;

-- Cosine similarity raised by the domain and content-type boosts, capped at 1.0.
CREATE OR REPLACE FUNCTION pyembed.domain_aware_similarity(a vector, b vector, domain_a text,
                                                           domain_b text, type_a text, type_b text)
RETURNS double precision
LANGUAGE sql
STABLE
PARALLEL SAFE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(1.0, pyembed.cosine_similarity(a, b)
                      + pyembed.domain_boost(domain_a, domain_b, type_a, type_b))
$$;

-- Search, then re-rank the ANN candidates by domain-aware similarity: the query's domain and
-- content type against each row's (read from the named source columns). Logged in final order.
CREATE OR REPLACE FUNCTION pyembed.search_domain_aware(
    collection text,
    query vector,
    query_domain text,
    query_type text DEFAULT NULL,
    domain_column text DEFAULT 'domain',
    type_column text DEFAULT NULL,
    k integer DEFAULT 10,
    candidates integer DEFAULT NULL,
    filter jsonb DEFAULT NULL,
    log boolean DEFAULT NULL,
    query_text text DEFAULT NULL)
RETURNS TABLE (query_id bigint, rank integer, pk jsonb, chunk text, distance double precision,
               similarity double precision, score double precision)
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed.collection(search_domain_aware.collection);
    started timestamptz := clock_timestamp();
    pool jsonb;
    ranked jsonb;
    logged_id bigint;
    col text;
BEGIN
    PERFORM pyembed._check_search(c, query, k, filter);
    FOREACH col IN ARRAY array_remove(ARRAY[domain_column, type_column], NULL) LOOP
        IF NOT pyembed._has_column(c, col) THEN
            RAISE EXCEPTION 'column "%" does not exist in %', col, pyembed._qualified_source(c)
                USING ERRCODE = 'undefined_column',
                      HINT = 'name the source columns that hold the domain and content type';
        END IF;
    END LOOP;
    pool := pyembed._nearest(c, query, least(coalesce(candidates, k * 5), pyembed.max_results()),
                             filter, NULL, NULL);
    EXECUTE format(
        'SELECT coalesce(jsonb_agg(x ORDER BY (x->>''score'')::float8 DESC), ''[]'') FROM ('
        ' SELECT x FROM ('
        '  SELECT jsonb_build_object(''pk'', p.item->''pk'', ''chunk_seq'', p.item->''chunk_seq'','
        '    ''chunk'', p.item->''chunk'', ''distance'', p.item->''distance'','
        '    ''similarity'', %1$s, ''score'', least(1.0, %1$s'
        '      + pyembed.domain_boost($2, src.domain, $3, src.ctype))) AS x'
        '  FROM jsonb_array_elements($1) AS p(item)'
        '  JOIN (SELECT %2$s AS pk, %3$s AS domain, %4$s AS ctype FROM %5$s AS s WHERE %6$s) AS src'
        '    ON src.pk = p.item->''pk'''
        ' ) AS scored ORDER BY (x->>''score'')::float8 DESC LIMIT $4) AS top',
        format('pyembed._similarity(%L, (p.item->>''distance'')::float8)', c.distance),
        pyembed._pk_sql(c, 's'),
        CASE WHEN domain_column IS NULL THEN 'NULL::text' ELSE format('s.%I::text', domain_column) END,
        CASE WHEN type_column IS NULL THEN 'NULL::text' ELSE format('s.%I::text', type_column) END,
        pyembed._qualified_source(c),
        pyembed._pk_match_sql(c, 's', '(SELECT jsonb_agg(e->''pk'') FROM jsonb_array_elements($1) e)'))
    INTO ranked
    USING pool, query_domain, query_type, k;
    logged_id := pyembed._log_search(
        c, log, query, query_text, k,
        jsonb_build_object('filter', filter, 'query_domain', query_domain, 'query_type', query_type,
                           'rerank', 'domain_aware'),
        ranked, started);
    RETURN QUERY
    SELECT logged_id, r.ord::int, r.item->'pk', r.item->>'chunk', (r.item->>'distance')::float8,
           (r.item->>'similarity')::float8, (r.item->>'score')::float8
    FROM jsonb_array_elements(ranked) WITH ORDINALITY AS r(item, ord)
    ORDER BY r.ord;
END
$$;
