-- requires: 0002
-- Helpers every other file builds on: the caller, collections by name, store names, vector
-- types, distance operators, the result limit, and SQL fragments for a collection's keys and text.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here. @extschema:vector@ is
-- replaced by the (quoted) schema of the pgvector extension.

-- The role a SECURITY DEFINER function acts for: the session's SET ROLE, else its login.
-- (Inside such a function current_user is the owner; a caller can only SET ROLE to roles it is
-- a member of, so this cannot name a role the session may not act as.)
CREATE OR REPLACE FUNCTION pyembed._caller()
RETURNS name
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN current_setting('role') = 'none' THEN session_user
                ELSE current_setting('role')::name END
$$;

-- Columns of `relid` among `columns` whose type could run a table owner's code when pyembed
-- reads them as another role (a cast to text or json defined by the type's owner): types that
-- are not built in, unless they are domains over built-in types. NULL when all are safe.
CREATE OR REPLACE FUNCTION pyembed._unsafe_columns(relid oid, columns text[])
RETURNS text
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('%I (%s)', a.attname, format_type(a.atttypid, a.atttypmod)), ', ')
    FROM pg_catalog.pg_attribute AS a
    JOIN pg_catalog.pg_type AS t ON t.oid = a.atttypid
    WHERE a.attrelid = relid AND a.attname = ANY (columns) AND a.attnum > 0
      AND NOT a.attisdropped
      AND t.oid >= 16384 AND NOT (t.typtype = 'd' AND t.typbasetype < 16384)
$$;

-- The collection row by name, or a clear error naming the known ones.
CREATE OR REPLACE FUNCTION pyembed.collection(collection_name text)
RETURNS pyembed.collections
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
BEGIN
    SELECT * INTO c FROM pyembed.collections WHERE name = collection_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'collection "%" does not exist', collection_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'known collections: ' || coalesce(
                      (SELECT string_agg(name, ', ' ORDER BY name) FROM pyembed.collections),
                      'none; create one with pyembed.create_collection(name, source)');
    END IF;
    RETURN c;
END
$$;

-- The collection row, locked until the end of the transaction: two switches, flips or rollbacks
-- of one collection run one after the other. A clear error for an unknown name.
CREATE OR REPLACE FUNCTION pyembed._lock_collection(collection_name text)
RETURNS pyembed.collections
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
BEGIN
    SELECT * INTO c FROM pyembed.collections WHERE name = collection_name FOR UPDATE;
    IF NOT FOUND THEN
        c := pyembed.collection(collection_name);  -- raises the usual clear error
    END IF;
    RETURN c;
END
$$;

-- Facts derived from a collection in one place each; SQL and Python (sql/queries/) read them
-- from here.

-- The most results one search returns (search, hybrid_search, similar and the evaluations).
CREATE OR REPLACE FUNCTION pyembed.max_results()
RETURNS integer
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 1000
$$;

-- The most lexemes of a query's text that hybrid search ranks by (see _query_lexemes).
CREATE OR REPLACE FUNCTION pyembed.max_query_lexemes()
RETURNS integer
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 32
$$;

-- The most chunks the text side of a hybrid search scores for one query (see _text_matches).
CREATE OR REPLACE FUNCTION pyembed.max_text_candidates()
RETURNS integer
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 1000
$$;

-- The model version that embeds for `name`: a collection (its active version), a version id,
-- MODEL@N, or MODEL (its newest ready version); NULL when nothing has that name. The one rule of
-- pyembed.embed, pyembed.search(collection, text) and `pyembed serve`.
CREATE OR REPLACE FUNCTION pyembed.embedding_version(name text)
RETURNS bigint
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT c.active_version_id FROM pyembed.collections AS c WHERE c.name = $1),
        (SELECT v.id FROM pyembed.model_versions AS v
         WHERE v.id = CASE WHEN $1 ~ '^[0-9]{1,18}$' THEN $1::bigint END),
        (SELECT v.id FROM pyembed.model_versions AS v JOIN pyembed.models AS m ON m.id = v.model_id
         WHERE m.name || '@' || v.version = $1),
        (SELECT v.id FROM pyembed.model_versions AS v JOIN pyembed.models AS m ON m.id = v.model_id
         WHERE m.name = $1 AND v.status = 'ready' ORDER BY v.version DESC LIMIT 1))
$$;

-- The channel pyembed notifies when a collection has new work; idle workers LISTEN on it.
CREATE OR REPLACE FUNCTION pyembed._work_channel()
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'pyembed_queue'
$$;

-- The store table's name of a collection's model version (in schema pyembed_store).
CREATE OR REPLACE FUNCTION pyembed._store_name(collection_name text, version_id bigint)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT collection_name || '_v' || version_id
$$;

-- The store table of a collection for a model version: pyembed_store.<name>_v<version id>.
CREATE OR REPLACE FUNCTION pyembed.store_table(c pyembed.collections, version_id bigint)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', 'pyembed_store', pyembed._store_name(c.name, version_id))
$$;

-- The versions of a collection whose store tables exist: the live ones, and kept ones of earlier
-- versions (for rollbacks, or left by drop_collection(keep_store => true)).
CREATE OR REPLACE FUNCTION pyembed._store_versions(collection_name text)
RETURNS SETOF bigint
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT substring(cl.relname FROM '_v([0-9]+)$')::bigint
    FROM pg_catalog.pg_class AS cl
    WHERE cl.relnamespace = 'pyembed_store'::regnamespace AND cl.relkind = 'r'
      AND cl.relname ~ ('^' || collection_name || '_v[0-9]+$')
$$;

-- The search function of a store (see _compile_nearest in 020_search.sql):
-- pyembed_store.<name>_v<version id>_nearest.
CREATE OR REPLACE FUNCTION pyembed._nearest_function(c pyembed.collections, version_id bigint)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', 'pyembed_store', pyembed._store_name(c.name, version_id) || '_nearest')
$$;

-- The whole search of a store (see _compile_search in 020_search.sql):
-- pyembed_store.<name>_v<version id>_search. pyembed.search spells the same name out.
CREATE OR REPLACE FUNCTION pyembed._search_function(c pyembed.collections, version_id bigint)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', 'pyembed_store', pyembed._store_name(c.name, version_id) || '_search')
$$;

-- How a collection keeps its vectors (index_options->>'storage'): vector (4 bytes a dimension),
-- halfvec (2 bytes: half the table and index), or binary: the vectors in full, searched through
-- a Hamming-distance index over their signs (one bit a dimension) whose candidates the full
-- vectors re-rank.
CREATE OR REPLACE FUNCTION pyembed._storage(c pyembed.collections)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(c.index_options->>'storage', 'vector')
$$;

-- Binary storage: how many candidates per wanted result the Hamming index hands to re-ranking
-- by the full vectors (index_options->>'rerank'; `pyembed index tune` chooses it).
CREATE OR REPLACE FUNCTION pyembed._rerank(c pyembed.collections)
RETURNS integer
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((c.index_options->>'rerank')::integer, 8)
$$;

-- The pgvector type of a collection's store column: halfvec when the collection asks for it, and
-- above 2,000 dimensions (HNSW and IVFFlat index at most 2,000 of vector and 4,000 of halfvec).
CREATE OR REPLACE FUNCTION pyembed._store_kind(c pyembed.collections, dims integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN dims > 2000 OR pyembed._storage(c) = 'halfvec' THEN 'halfvec' ELSE 'vector' END
$$;

-- SQL for the query vector `param` (e.g. '$1') as the store's type: halfvec stores compare
-- with a halfvec query, or the index is not used.
CREATE OR REPLACE FUNCTION pyembed._as_store_type(c pyembed.collections, param text, dims integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE pyembed._store_kind(c, dims)
           WHEN 'halfvec' THEN format('%s::@extschema:vector@.halfvec(%s)', param, dims)
           ELSE param END
$$;

-- A collection's distance as pgvector names it: the operator and the operator class suffix.
CREATE OR REPLACE FUNCTION pyembed._distance(distance text, OUT operator text, OUT ops text)
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.operator, d.ops
    FROM (VALUES ('cosine', '<=>', 'cosine_ops'), ('l2', '<->', 'l2_ops'),
                 ('inner_product', '<#>', 'ip_ops')) AS d (distance, operator, ops)
    WHERE d.distance = _distance.distance
$$;

-- pgvector's distance operator for a collection's distance, schema-qualified for dynamic SQL.
CREATE OR REPLACE FUNCTION pyembed._distance_operator(distance text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('OPERATOR(@extschema:vector@.%s)', (pyembed._distance(distance)).operator)
$$;

-- SQL for the bits of the signs of `expr` (a store's embedding or a query vector), as the binary
-- index keys them.
CREATE OR REPLACE FUNCTION pyembed._binary_sql(expr text, dims integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('@extschema:vector@.binary_quantize(%s)::bit(%s)', expr, dims)
$$;

-- What an ANN index on a collection's store indexes, with its operator class, schema-qualified:
-- the embedding, or for binary storage the bits of its signs (Hamming distance).
CREATE OR REPLACE FUNCTION pyembed._index_key(c pyembed.collections, dims integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pyembed._storage(c) = 'binary'
                THEN format('(%s) @extschema:vector@.bit_hamming_ops',
                            pyembed._binary_sql('embedding', dims))
                ELSE format('embedding @extschema:vector@.%s_%s', pyembed._store_kind(c, dims),
                            (pyembed._distance(c.distance)).ops) END
$$;

CREATE OR REPLACE FUNCTION pyembed._qualified_source(c pyembed.collections)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', c.source_schema, c.source_table)
$$;

-- The key columns of a collection's source as SQL, e.g. "id", "lang" (for USING and lists).
CREATE OR REPLACE FUNCTION pyembed._key_columns(c pyembed.collections)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('%I', col), ', ' ORDER BY ord)
    FROM unnest(c.pk_columns) WITH ORDINALITY AS k(col, ord)
$$;

-- SQL for a row's key as a jsonb array, e.g. jsonb_build_array(r."id").
CREATE OR REPLACE FUNCTION pyembed._pk_sql(c pyembed.collections, alias text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('jsonb_build_array(%s)',
                  string_agg(format('%I.%I', alias, col), ', ' ORDER BY ord))
    FROM unnest(c.pk_columns) WITH ORDINALITY AS k(col, ord)
$$;

-- SQL matching rows of `alias` whose key is in the jsonb array of keys `keys_sql`.
CREATE OR REPLACE FUNCTION pyembed._pk_match_sql(c pyembed.collections, alias text, keys_sql text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('(%s) IN (SELECT %s FROM jsonb_array_elements(%s) AS key(v))',
                  string_agg(format('%I.%I', alias, col), ', ' ORDER BY ord),
                  string_agg(format('(key.v->>%s)::%s', ord - 1, typ), ', ' ORDER BY ord),
                  keys_sql)
    FROM unnest(c.pk_columns, c.pk_types) WITH ORDINALITY AS k(col, typ, ord)
$$;

-- The column names a template's {placeholders} name, in order.
CREATE OR REPLACE FUNCTION pyembed._template_columns(template text)
RETURNS text[]
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(m[1]), '{}')
    FROM regexp_matches(template, '\{([A-Za-z_][A-Za-z0-9_$ ]*)\}', 'g') AS m
$$;

-- SQL for the text to embed of a row: its text columns joined by blank lines, or the template
-- with {column} placeholders filled in. NULL when every column that feeds it is NULL.
CREATE OR REPLACE FUNCTION pyembed._text_sql(c pyembed.collections, alias text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[] := '{}';
    cols text[] := '{}';
    piece text;
    rest text;
    m text[];
BEGIN
    IF c.text_columns IS NOT NULL THEN
        SELECT array_agg(format('%I.%I::text', alias, col) ORDER BY ord)
          INTO cols
          FROM unnest(c.text_columns) WITH ORDINALITY AS t(col, ord);
        RETURN format('nullif(concat_ws(E''\n\n'', %s), '''')', array_to_string(cols, ', '));
    END IF;
    rest := c.text_template;
    LOOP
        m := regexp_match(rest, '^(.*?)\{([A-Za-z_][A-Za-z0-9_$ ]*)\}(.*)$', 's');
        EXIT WHEN m IS NULL;
        IF m[1] <> '' THEN
            parts := parts || quote_literal(m[1]);
        END IF;
        piece := format('%I.%I::text', alias, m[2]);
        parts := parts || piece;
        cols := cols || piece;
        rest := m[3];
    END LOOP;
    IF rest <> '' THEN
        parts := parts || quote_literal(rest);
    END IF;
    RETURN format('CASE WHEN num_nonnulls(%s) = 0 THEN NULL ELSE nullif(concat(%s), '''') END',
                  array_to_string(cols, ', '), array_to_string(parts, ', '));
END
$$;
