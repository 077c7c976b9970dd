-- Named queries used by pyembed's Python code. Each starts with a `-- name: NAME` line and
-- runs up to the next one; pyembed.queries loads them by name.

-- name: extension_installed
SELECT 1 FROM pg_extension WHERE extname = %(name)s;

-- name: extension_available_version
SELECT coalesce(installed_version, default_version) AS version
FROM pg_available_extensions
WHERE name = %(name)s;

-- name: database_exists
SELECT 1 FROM pg_database WHERE datname = %(name)s;

-- name: server_overview
SELECT current_setting('server_version') AS server_version,
       current_database() AS database,
       current_user AS "user",
       (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector_version,
       (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'vector') AS pgvector_schema,
       pg_is_in_recovery() AS in_recovery;

-- name: migration_lock
SELECT pg_advisory_xact_lock(:key);
