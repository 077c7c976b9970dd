-- requires: 0008
-- Blue/green model switches of a collection: begin (new store beside the live one, backfill
-- queued), finish (one flip), abort, roll back; and the views a DBA reads about it.
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here.

-- Drop a collection's store for a version with what hangs on it: its queued work and BM25
-- statistics. Not for the active version (callers check).
CREATE OR REPLACE FUNCTION pyembed._drop_store(c pyembed.collections, version_id bigint)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM pyembed.queue WHERE collection_id = c.id AND model_version_id = version_id;
    DELETE FROM pyembed.text_search_stats
    WHERE collection_id = c.id AND model_version_id = version_id;
    IF to_regclass(pyembed.store_table(c, version_id)) IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE %s', pyembed.store_table(c, version_id));
    EXECUTE format('DROP FUNCTION IF EXISTS %s', pyembed._nearest_function(c, version_id));
    EXECUTE format('DROP FUNCTION IF EXISTS %s', pyembed._search_function(c, version_id));
    RETURN true;
END
$$;

-- A canary (0020 on) still open when its switch is finished or aborted by other means ends
-- with it, so none is left pointing at a store that changed role.
CREATE OR REPLACE FUNCTION pyembed._close_canary(collection_id bigint, decision text, reason text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass('pyembed.canaries') IS NOT NULL THEN
        EXECUTE 'UPDATE pyembed.canaries SET ended_at = now(), decision = $2, decision_reason = $3'
                ' WHERE collection_id = $1 AND ended_at IS NULL'
        USING collection_id, decision, reason;
    END IF;
END
$$;

-- Start switching a collection to another model version: create its store beside the live one
-- and queue every row for it at low priority (fresh writes go first, and reach both versions
-- while the switch runs). Searches keep using the active version until finish_switch.
CREATE OR REPLACE FUNCTION pyembed._begin_switch(
    collection_name text,
    version_id bigint,
    allow_other_model boolean,
    reason text)
RETURNS pyembed.collections
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
    v pyembed.model_versions;
    family text;
BEGIN
    c := pyembed._lock_collection(collection_name);
    SELECT * INTO v FROM pyembed.model_versions WHERE id = version_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model version id % does not exist', version_id
            USING ERRCODE = 'undefined_object', HINT = 'see `pyembed models list`';
    END IF;
    SELECT m.name INTO family FROM pyembed.models AS m WHERE m.id = v.model_id;
    -- As JSON: models.task exists from 0016 on, and this file applies from 0008.
    IF (SELECT to_jsonb(m)->>'task' FROM pyembed.models AS m WHERE m.id = v.model_id) = 'reranker' THEN
        RAISE EXCEPTION 'model version % (% v%) is a reranker, which embeds nothing', v.id, family,
            v.version
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'a collection switches between embedding model versions';
    END IF;
    IF v.status <> 'ready' THEN
        RAISE EXCEPTION 'model version % (% v%) is %, not ready', v.id, family, v.version, v.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF c.pending_version_id IS NOT NULL THEN
        RAISE EXCEPTION 'collection "%" is already switching to model version %', c.name,
            c.pending_version_id USING ERRCODE = 'lock_not_available',
            HINT = format('wait for it, or SELECT pyembed.abort_switch(%L)', c.name);
    END IF;
    IF v.id = c.active_version_id THEN
        RAISE EXCEPTION 'model version % is already active on "%"', v.id, c.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v.model_id <> c.model_id AND NOT allow_other_model THEN
        RAISE EXCEPTION 'model version % belongs to model "%", but collection "%" uses model "%"',
            v.id, family, c.name, (SELECT name FROM pyembed.models WHERE id = c.model_id)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'promote a version of the collection''s own model, or pass '
                         'allow_other_model => true to change the model (queries must then be '
                         'embedded with the new one)';
    END IF;
    UPDATE pyembed.collections SET pending_version_id = v.id, updated_at = now()
    WHERE id = c.id RETURNING * INTO c;
    PERFORM pyembed._create_store(c, v.id);
    INSERT INTO pyembed.deployments (collection_id, action, from_version_id, to_version_id, reason, performed_by)
    VALUES (c.id, 'switch_started', c.active_version_id, v.id, coalesce(reason, ''), pyembed._caller());
    RETURN c;
END
$$;

-- Start switching a collection to another model version (see _begin_switch); every row is
-- queued for it at low priority, read with the caller's rights. Returns how many were queued.
CREATE OR REPLACE FUNCTION pyembed.begin_switch(
    collection_name text,
    version_id bigint,
    allow_other_model boolean DEFAULT false,
    reason text DEFAULT '')
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections := pyembed._begin_switch(collection_name, version_id,
                                                   coalesce(allow_other_model, false), reason);
BEGIN
    RETURN pyembed.enqueue_all(c.name, c.pending_version_id, 10::smallint);
END
$$;

-- Rows still waiting to be embedded for the collection's pending version (its backfill, and
-- fresh writes that every live version needs).
CREATE OR REPLACE FUNCTION pyembed.switch_backlog(collection_name text)
RETURNS bigint
LANGUAGE sql
STABLE
-- SECURITY DEFINER: writers follow a switch without reading the queue itself; a count only.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FROM pyembed.queue AS q JOIN pyembed.collections AS c ON c.id = q.collection_id
    WHERE c.name = collection_name AND c.pending_version_id IS NOT NULL
      AND (q.model_version_id = c.pending_version_id OR q.model_version_id IS NULL)
$$;

-- Make the pending version the active one, in one transaction: searches answer from the old
-- store up to the commit and from the new one right after it. Refuses while its backfill runs.
CREATE OR REPLACE FUNCTION pyembed.finish_switch(
    collection_name text,
    reason text DEFAULT '',
    metrics jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
-- SECURITY DEFINER: the catalog, views and stores belong to pyembed's owner.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
    previous bigint;
    backfill bigint;
BEGIN
    c := pyembed._lock_collection(collection_name);
    IF c.pending_version_id IS NULL THEN
        RAISE EXCEPTION 'collection "%" is not switching models', c.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'start with pyembed.begin_switch (or `pyembed models promote`)';
    END IF;
    SELECT count(*) INTO backfill FROM pyembed.queue
    WHERE collection_id = c.id AND model_version_id = c.pending_version_id;
    IF backfill > 0 THEN
        RAISE EXCEPTION 'model version % of "%" still has % rows to embed', c.pending_version_id,
            c.name, backfill USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'run workers until pyembed.switch_backlog(collection) is 0';
    END IF;
    SELECT count(*) INTO backfill FROM pyembed.failed_items
    WHERE collection_id = c.id AND model_version_id = c.pending_version_id;
    IF backfill > 0 THEN
        RAISE EXCEPTION '% rows of "%" failed to embed with model version %', backfill, c.name,
            c.pending_version_id USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = format('see `pyembed failed list --collection %s`, then retry them or '
                          'SELECT pyembed.abort_switch(%L)', c.name, c.name);
    END IF;
    previous := c.active_version_id;
    UPDATE pyembed.collections
    SET active_version_id = c.pending_version_id, pending_version_id = NULL,
        model_id = (SELECT model_id FROM pyembed.model_versions WHERE id = c.pending_version_id),
        updated_at = now()
    WHERE id = c.id
    RETURNING * INTO c;
    PERFORM pyembed._create_view(c);
    PERFORM pyembed._close_canary(c.id, 'promoted', 'the switch was finished: ' || coalesce(reason, ''));
    INSERT INTO pyembed.deployments (collection_id, action, from_version_id, to_version_id,
                                     reason, metrics, performed_by)
    VALUES (c.id, 'promote', previous, c.active_version_id, coalesce(reason, ''),
            coalesce(metrics, '{}'), pyembed._caller());
    PERFORM pg_notify(pyembed._work_channel(), c.name);
    RETURN c.active_version_id;
END
$$;

-- Give up a switch: the pending version's store and backfill go, the active version stays.
CREATE OR REPLACE FUNCTION pyembed.abort_switch(collection_name text, reason text DEFAULT '')
RETURNS void
LANGUAGE plpgsql
VOLATILE
-- SECURITY DEFINER: the catalog, views and stores belong to pyembed's owner.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
    abandoned bigint;
BEGIN
    c := pyembed._lock_collection(collection_name);
    IF c.pending_version_id IS NULL THEN
        RAISE EXCEPTION 'collection "%" is not switching models', c.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    abandoned := c.pending_version_id;
    UPDATE pyembed.collections SET pending_version_id = NULL, updated_at = now() WHERE id = c.id;
    PERFORM pyembed._close_canary(c.id, 'aborted', 'the switch was aborted: ' || coalesce(reason, ''));
    PERFORM pyembed._drop_store(c, abandoned);
    INSERT INTO pyembed.deployments (collection_id, action, from_version_id, to_version_id, reason, performed_by)
    VALUES (c.id, 'switch_aborted', c.active_version_id, abandoned, coalesce(reason, ''), pyembed._caller());
END
$$;

-- Flip back to the version that was active before the current one, at once: its store was kept.
-- Rows written meanwhile are queued for it at low priority (unchanged rows cost no encoding).
CREATE OR REPLACE FUNCTION pyembed._rollback(collection_name text, reason text)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
    target bigint;
    current_version bigint;
BEGIN
    c := pyembed._lock_collection(collection_name);
    IF c.pending_version_id IS NOT NULL THEN
        RAISE EXCEPTION 'collection "%" is switching to version %', c.name, c.pending_version_id
            USING ERRCODE = 'lock_not_available',
                  HINT = format('finish or abort it first: SELECT pyembed.abort_switch(%L)', c.name);
    END IF;
    -- The version the current one replaced, by the latest promote or rollback that made it active.
    SELECT d.from_version_id INTO target FROM pyembed.deployments AS d
    WHERE d.collection_id = c.id AND d.action IN ('promote', 'rollback')
      AND d.to_version_id = c.active_version_id
    ORDER BY d.id DESC LIMIT 1;
    IF target IS NULL THEN
        RAISE EXCEPTION 'collection "%" has no earlier version to roll back to', c.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'SELECT * FROM pyembed.deployments shows its history';
    END IF;
    IF to_regclass(pyembed.store_table(c, target)) IS NULL
       OR (SELECT status FROM pyembed.model_versions WHERE id = target) = 'retired' THEN
        RAISE EXCEPTION 'the earlier version % of "%" was retired; its store is gone', target, c.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('promote it again instead: pyembed models promote %s %s', c.name, target);
    END IF;
    current_version := c.active_version_id;
    UPDATE pyembed.collections
    SET active_version_id = target,
        model_id = (SELECT model_id FROM pyembed.model_versions WHERE id = target),
        updated_at = now()
    WHERE id = c.id
    RETURNING * INTO c;
    -- The storage may have changed since that store was live.
    PERFORM pyembed._fit_store(c, target);
    PERFORM pyembed._create_view(c);
    INSERT INTO pyembed.deployments (collection_id, action, from_version_id, to_version_id, reason, performed_by)
    VALUES (c.id, 'rollback', current_version, target, coalesce(reason, ''), pyembed._caller());
    RETURN target;
END
$$;

-- Roll back (see _rollback); rows written meanwhile are queued for the restored version at low
-- priority, read with the caller's rights (unchanged rows cost no encoding).
CREATE OR REPLACE FUNCTION pyembed.rollback(collection_name text, reason text DEFAULT '')
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target bigint := pyembed._rollback(collection_name, reason);
BEGIN
    PERFORM pyembed.enqueue_all(collection_name, target, 10::smallint);
    RETURN target;
END
$$;

-- Mark a version retired and drop its stores; refused while any collection uses it.
CREATE OR REPLACE FUNCTION pyembed.retire_version(version_id bigint, reason text DEFAULT '')
RETURNS integer
LANGUAGE plpgsql
VOLATILE
-- SECURITY DEFINER: the catalog, views and stores belong to pyembed's owner.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pyembed.collections;
    dropped integer := 0;
    users text;
BEGIN
    IF NOT EXISTS (SELECT FROM pyembed.model_versions WHERE id = version_id) THEN
        RAISE EXCEPTION 'model version id % does not exist', version_id
            USING ERRCODE = 'undefined_object', HINT = 'see `pyembed models list`';
    END IF;
    SELECT string_agg(name, ', ') INTO users FROM pyembed.collections
    WHERE active_version_id = version_id OR pending_version_id = version_id;
    IF users IS NOT NULL THEN
        RAISE EXCEPTION 'model version % is in use by collection(s) %', version_id, users
            USING ERRCODE = 'object_in_use',
                  HINT = 'promote another version (or roll back) first';
    END IF;
    UPDATE pyembed.model_versions SET status = 'retired' WHERE id = version_id;
    FOR c IN SELECT * FROM pyembed.collections LOOP
        CONTINUE WHEN NOT pyembed._drop_store(c, version_id);
        INSERT INTO pyembed.deployments (collection_id, action, from_version_id, reason, performed_by)
    VALUES (c.id, 'retire', version_id, coalesce(reason, ''), pyembed._caller());
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;

-- Versions with their family, lineage and where they serve.
CREATE OR REPLACE VIEW pyembed.model_version_status AS
SELECT v.id,
       m.name AS model,
       v.version,
       v.kind,
       v.status,
       v.parent_version_id,
       m.dimensions,
       v.artifact_size,
       left(v.artifact_sha256, 12) AS sha256,
       (SELECT array_agg(c.name ORDER BY c.name) FROM pyembed.collections AS c
        WHERE c.active_version_id = v.id) AS active_in,
       (SELECT array_agg(c.name ORDER BY c.name) FROM pyembed.collections AS c
        WHERE c.pending_version_id = v.id) AS pending_in,
       v.produced_by,
       v.created_at
FROM pyembed.model_versions AS v
JOIN pyembed.models AS m ON m.id = v.model_id;
COMMENT ON VIEW pyembed.model_version_status IS
    'model versions with their family, parent, artifact and the collections they serve';
