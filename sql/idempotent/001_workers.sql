-- requires: 0001
-- Re-applied on every upgrade: only CREATE OR REPLACE objects here.

-- Workers as a DBA wants to read them: is it alive, how long since its last heartbeat.
CREATE OR REPLACE VIEW pyembed.worker_status AS
SELECT w.id,
       w.hostname,
       w.pid,
       -- A running worker whose heartbeat is older than its lease (its items are being taken
       -- over) was killed or lost the database: 'lost'.
       CASE WHEN w.state IN ('running', 'stopping') AND w.heartbeat_at < now() - make_interval(
                secs => greatest(coalesce((w.details->>'lease_seconds')::float8, 60), 10))
            THEN 'lost' ELSE w.state END AS state,
       w.state = 'running' AND w.heartbeat_at >= now() - make_interval(
           secs => greatest(coalesce((w.details->>'lease_seconds')::float8, 60), 10)) AS alive,
       now() - w.heartbeat_at AS since_heartbeat,
       w.started_at,
       w.rows_embedded,
       w.chunks_written,
       w.batches,
       w.failures,
       w.last_error
FROM pyembed.workers AS w;
COMMENT ON VIEW pyembed.worker_status IS
    'workers with liveness judged by heartbeat age: lost when it is older than their lease';

-- The schema revision as SQL can see it; NULL before pyembed is installed.
CREATE OR REPLACE FUNCTION pyembed.schema_revision()
RETURNS text
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT version_num FROM public.pyembed_alembic_version LIMIT 1
$$;
COMMENT ON FUNCTION pyembed.schema_revision() IS 'the pyembed migration revision of this database';
