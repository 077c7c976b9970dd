-- requires: 0003
-- The filter language of pyembed's searches, compiled to predicates on the source's columns.
-- Re-applied on every upgrade.
--
--   {"lang": "en", "price": {"$lt": 10}, "tag": {"$in": ["a", "b"]},
--    "published": {"$gte": "2024-01-01"}, "$or": [{"draft": false}, {"owner": "me"}]}
--
-- A key is a column of the source, or $and / $or (an array of filters) or $not (a filter). A
-- column's value is a value (equality; NULL: IS NULL) or an object of operators: $eq $ne $lt
-- $lte $gt $gte $in $nin $exists. Array columns: a value or an array of values is contained
-- (@>), $in overlaps (&&). json/jsonb columns: a value is contained (@>).
-- The values are bound, not spliced: the predicate refers to them as (<param>[n])::type, a
-- text[] parameter cast to the column's type, which a search plans per call with the values as
-- constants, so the source's B-tree and GIN indexes apply.

-- Replaced by _filter_sql (the filter was matched as to_jsonb(row) @> filter, which no index of
-- the source can serve).
DROP FUNCTION IF EXISTS pyembed._typed_filter(pyembed.collections, jsonb);

-- A source column as the filter compiler needs it: the type its values are cast to (a domain's
-- base type: casting into a domain would run its CHECK constraints, its owner's code, as the
-- searcher), and how it compares (scalar, array or json). NULL when the column does not exist.
CREATE OR REPLACE FUNCTION pyembed._filter_column(relid oid, column_name text,
                                                  OUT cast_type text, OUT kind text,
                                                  OUT type_name text)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    typ oid;
    elem oid;
BEGIN
    SELECT a.atttypid INTO typ FROM pg_attribute AS a
    WHERE a.attrelid = relid AND a.attname = column_name AND a.attnum > 0 AND NOT a.attisdropped;
    IF typ IS NULL THEN
        RETURN;
    END IF;
    type_name := format_type(typ, NULL);
    typ := pyembed._base_type(typ);
    SELECT t.typelem INTO elem FROM pg_type AS t WHERE t.oid = typ AND t.typcategory = 'A';
    IF elem IS NOT NULL THEN
        typ := pyembed._base_type(elem);
        kind := 'array';
    ELSIF typ IN ('json'::regtype, 'jsonb'::regtype) THEN
        typ := 'jsonb'::regtype;
        kind := 'json';
    ELSE
        kind := 'scalar';
    END IF;
    -- Operators are looked up in pg_catalog only (the search path of every pyembed function), so
    -- nobody's operator runs as the searcher; enums compare by pg_catalog's.
    IF NOT EXISTS (SELECT FROM pg_type AS t
                   WHERE t.oid = typ AND (t.typnamespace = 'pg_catalog'::regnamespace
                                          OR t.typtype = 'e')) THEN
        RAISE EXCEPTION 'pyembed cannot filter on column "%" of type %', column_name, type_name
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'filter on columns of built-in types (or enums, domains and arrays of them)';
    END IF;
    cast_type := typ::regtype::text;
END
$$;

-- A domain's base type (through domains over domains); any other type itself.
CREATE OR REPLACE FUNCTION pyembed._base_type(typ oid)
RETURNS oid
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE chain(oid, base, depth) AS (
        SELECT t.oid, t.typbasetype, 0 FROM pg_type AS t WHERE t.oid = typ
        UNION ALL
        SELECT t.oid, t.typbasetype, chain.depth + 1
        FROM chain JOIN pg_type AS t ON t.oid = chain.base
        WHERE chain.base <> 0 AND chain.depth < 32)
    SELECT oid FROM chain WHERE base = 0
$$;

-- One level of a filter: the predicate of the object `filter` on the source `relid` (alias s),
-- its values appended to `params` (with their cast types and columns, for the error that names
-- a bad one). Recursive through $and, $or and $not.
CREATE OR REPLACE FUNCTION pyembed._filter_clause(relid oid, filter jsonb, param text,
                                                  depth integer, INOUT params text[],
                                                  INOUT types text[], INOUT columns text[],
                                                  OUT clause text)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item record;
    op record;
    parts text[] := '{}';
    sub text;
    branch jsonb;
    col record;
    target text;
    value jsonb;
    refs text;
    list text;
    ops jsonb;
BEGIN
    IF depth > 32 THEN
        RAISE EXCEPTION 'the filter nests more than 32 levels deep'
            USING ERRCODE = 'program_limit_exceeded', HINT = 'flatten the filter';
    END IF;
    IF jsonb_typeof(filter) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'a filter must be a JSON object of columns and operators, not %',
            coalesce(jsonb_typeof(filter), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'e.g. filter => ''{"lang": "en", "price": {"$lt": 10}}''';
    END IF;
    FOR item IN SELECT e.key, e.value FROM jsonb_each(filter) AS e ORDER BY e.key LOOP
        IF item.key IN ('$and', '$or') THEN
            IF jsonb_typeof(item.value) <> 'array' OR jsonb_array_length(item.value) = 0 THEN
                RAISE EXCEPTION '% takes a non-empty array of filters, not %', item.key, item.value
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('e.g. {"%s": [{"lang": "en"}, {"lang": "de"}]}', item.key);
            END IF;
            sub := NULL;
            FOR branch IN SELECT b FROM jsonb_array_elements(item.value) AS b LOOP
                SELECT f.params, f.types, f.columns, format('(%s)', f.clause)
                INTO params, types, columns, target
                FROM pyembed._filter_clause(relid, branch, param, depth + 1, params, types,
                                            columns) AS f;
                sub := CASE WHEN sub IS NULL THEN target
                            ELSE sub || CASE item.key WHEN '$and' THEN ' AND ' ELSE ' OR ' END
                                 || target END;
            END LOOP;
            parts := parts || format('(%s)', sub);
            CONTINUE;
        ELSIF item.key = '$not' THEN
            SELECT f.params, f.types, f.columns, f.clause INTO params, types, columns, sub
            FROM pyembed._filter_clause(relid, item.value, param, depth + 1, params, types,
                                        columns) AS f;
            -- Rows where the inner filter is not true: a NULL column does not hide a row.
            parts := parts || format('((%s) IS NOT TRUE)', sub);
            CONTINUE;
        ELSIF left(item.key, 1) = '$' THEN
            RAISE EXCEPTION 'unknown filter operator % at the level of columns', item.key
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'combine filters with $and, $or, $not; compare a column with {"column": {"$lt": 10}}';
        END IF;
        col := pyembed._filter_column(relid, item.key);
        IF col.kind IS NULL THEN
            RAISE EXCEPTION 'filter names column "%" that % does not have', item.key,
                relid::regclass
                USING ERRCODE = 'undefined_column',
                      HINT = 'filter on columns of the collection''s source table';
        END IF;
        target := format('s.%I', item.key);
        IF col.kind = 'json' THEN
            target := target || '::jsonb';
        END IF;
        -- A value, not operators: equality (containment for arrays and JSON).
        IF jsonb_typeof(item.value) = 'object'
           AND EXISTS (SELECT FROM jsonb_object_keys(item.value) AS key WHERE left(key, 1) = '$') THEN
            ops := item.value;
        ELSE
            ops := jsonb_build_object('$eq', item.value);
        END IF;
        FOR op IN SELECT e.key, e.value FROM jsonb_each(ops) AS e ORDER BY e.key LOOP
            value := op.value;
            IF op.key NOT IN ('$eq', '$ne', '$lt', '$lte', '$gt', '$gte', '$in', '$nin', '$exists') THEN
                RAISE EXCEPTION 'unknown filter operator % for column "%"', op.key, item.key
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'operators: $eq $ne $lt $lte $gt $gte $in $nin $exists (an object of column values needs no operator)';
            END IF;
            IF op.key = '$exists' THEN
                IF jsonb_typeof(value) <> 'boolean' THEN
                    RAISE EXCEPTION '$exists for column "%" takes true or false, not %', item.key, value
                        USING ERRCODE = 'invalid_parameter_value',
                              HINT = '{"$exists": true} keeps rows where the column is not NULL';
                END IF;
                parts := parts || format('%s IS %sNULL', target,
                                         CASE WHEN value::boolean THEN 'NOT ' ELSE '' END);
                CONTINUE;
            END IF;
            IF jsonb_typeof(value) = 'null' THEN
                IF op.key NOT IN ('$eq', '$ne') THEN
                    RAISE EXCEPTION '% for column "%" compares with NULL, which matches nothing',
                        op.key, item.key
                        USING ERRCODE = 'null_value_not_allowed',
                              HINT = 'use {"$exists": false} for rows where the column is NULL';
                END IF;
                parts := parts || format('%s IS %sNULL', target,
                                         CASE op.key WHEN '$ne' THEN 'NOT ' ELSE '' END);
                CONTINUE;
            END IF;
            IF op.key IN ('$in', '$nin') THEN
                IF jsonb_typeof(value) <> 'array' THEN
                    RAISE EXCEPTION '% for column "%" takes an array of values, not %', op.key,
                        item.key, value
                        USING ERRCODE = 'invalid_parameter_value',
                              HINT = format('e.g. {"%s": {"%s": ["a", "b"]}}', item.key, op.key);
                END IF;
            ELSIF jsonb_typeof(value) = 'array' AND col.kind = 'scalar' THEN
                RAISE EXCEPTION 'column "%" (%) holds one value; % got an array', item.key,
                    col.type_name, op.key
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('to match any of several values: {"%s": {"$in": [...]}}', item.key);
            ELSIF jsonb_typeof(value) = 'object' AND col.kind <> 'json' THEN
                RAISE EXCEPTION 'column "%" (%) got an object: operators start with $', item.key,
                    col.type_name
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('e.g. {"%s": {"$gte": 1, "$lt": 10}}', item.key);
            END IF;
            IF op.key IN ('$lt', '$lte', '$gt', '$gte') AND col.kind <> 'scalar' THEN
                RAISE EXCEPTION '% cannot compare column "%" of type %', op.key, item.key,
                    col.type_name
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'comparisons take a column of one value (a number, text, a date, ...)';
            END IF;
            -- The values: one bound parameter each, cast to the column's (element) type.
            refs := NULL;
            FOR branch IN
                SELECT v FROM jsonb_array_elements(CASE
                    WHEN op.key IN ('$in', '$nin') THEN value
                    WHEN jsonb_typeof(value) = 'array' AND col.kind = 'array' THEN value
                    ELSE jsonb_build_array(value) END) AS v
            LOOP
                IF jsonb_typeof(branch) IN ('null', 'object', 'array') AND col.kind <> 'json' THEN
                    RAISE EXCEPTION '% for column "%" holds %, not a value of the column''s type',
                        op.key, item.key, branch
                        USING ERRCODE = 'invalid_parameter_value',
                              HINT = 'give plain values; {"$exists": false} matches NULL';
                END IF;
                params := params || CASE WHEN col.kind = 'json' THEN branch::text
                                         ELSE branch #>> '{}' END;
                types := types || col.cast_type;
                columns := columns || item.key;
                refs := concat_ws(', ', refs,
                                  format('(%s[%s])::%s', param, cardinality(params), col.cast_type));
            END LOOP;
            list := CASE WHEN refs IS NULL THEN format('ARRAY[]::%s[]', col.cast_type)
                         ELSE format('ARRAY[%s]', refs) END;
            parts := parts || CASE
                WHEN col.kind = 'array' THEN CASE op.key
                    WHEN '$eq' THEN format('%s @> %s', target, list)
                    WHEN '$ne' THEN format('(%s @> %s) IS NOT TRUE', target, list)
                    WHEN '$in' THEN format('%s && %s', target, list)
                    ELSE format('(%s && %s) IS NOT TRUE', target, list) END
                WHEN col.kind = 'json' AND op.key = '$eq' THEN format('%s @> %s', target, refs)
                ELSE CASE op.key
                    WHEN '$eq' THEN format('%s = %s', target, refs)
                    WHEN '$ne' THEN format('%s IS DISTINCT FROM %s', target, refs)
                    WHEN '$lt' THEN format('%s < %s', target, refs)
                    WHEN '$lte' THEN format('%s <= %s', target, refs)
                    WHEN '$gt' THEN format('%s > %s', target, refs)
                    WHEN '$gte' THEN format('%s >= %s', target, refs)
                    WHEN '$in' THEN format('%s = ANY (%s)', target, list)
                    -- $nin keeps rows where the column is NULL, as $ne does.
                    ELSE format('(%s = ANY (%s)) IS NOT TRUE', target, list) END
                END;
        END LOOP;
    END LOOP;
    clause := CASE WHEN cardinality(parts) = 0 THEN 'true' ELSE array_to_string(parts, ' AND ') END;
END
$$;

-- The predicate of `filter` on collection c's source (alias s) and the values it binds, a text
-- array that the predicate reads as `param` (e.g. '$5'). Every value is cast to its column's
-- type here, once: a value that is not of the column's type is an error that names the column,
-- not an empty result. NULL and NULL for no filter.
CREATE OR REPLACE FUNCTION pyembed._filter_sql(c pyembed.collections, filter jsonb, param text,
                                               OUT predicate text, OUT params text[])
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    relid oid := to_regclass(pyembed._qualified_source(c));
    types text[];
    columns text[];
    typ text;
    i integer;
BEGIN
    IF filter IS NULL THEN
        RETURN;
    END IF;
    SELECT f.clause, f.params, f.types, f.columns INTO predicate, params, types, columns
    FROM pyembed._filter_clause(relid, filter, param, 0, '{}', '{}', '{}') AS f;
    FOR typ IN SELECT DISTINCT t FROM unnest(types) AS t LOOP
        BEGIN
            EXECUTE format('SELECT $1::%s[]', typ)
            USING (SELECT array_agg(p) FROM unnest(params, types) AS u(p, t) WHERE u.t = typ);
        EXCEPTION WHEN data_exception THEN
            FOR i IN 1 .. cardinality(params) LOOP
                CONTINUE WHEN types[i] <> typ;
                BEGIN
                    EXECUTE format('SELECT $1::%s', typ) USING params[i];
                EXCEPTION WHEN data_exception THEN
                    RAISE EXCEPTION 'filter value % for column "%" is not a valid %',
                        to_jsonb(params[i]), columns[i], typ
                        USING ERRCODE = 'invalid_parameter_value',
                              HINT = format('give a value of the column''s type (%s)', typ);
                END;
            END LOOP;
            RAISE;  -- the array as a whole: e.g. a value too long for it
        END;
    END LOOP;
END
$$;
