-- 0011: trust. FROZEN once released.
-- A NOLOGIN owner role owns pyembed's schemas, tables, functions and stores, so no writer owns a
-- store (and no one but pyembed's own functions can put a trigger on one). The role that runs
-- the migrations acts as it (superusers do anyway; anyone else is made a member here).
-- The ownership itself, the grants and the row-level security policies are applied by
-- sql/idempotent/090_grants.sql on every upgrade, so objects added later are covered too.

DO $$
BEGIN
    IF to_regrole('pyembed_owner') IS NULL THEN
        CREATE ROLE pyembed_owner NOLOGIN;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'pyembed_owner', 'USAGE') THEN
        EXECUTE format('GRANT pyembed_owner TO %I', current_user);
    END IF;
END
$$;

-- Who searched, as the tenant the collection's tenant setting named at the time (NULL when the
-- collection names none). Row-level security of the log tables compares it.
ALTER TABLE pyembed.query_log ADD COLUMN tenant text;
CREATE INDEX query_log_by_searcher ON pyembed.query_log (searched_by, tenant);

-- Settings that steer code in the server process (pyembed.embed): written by the admin only,
-- never by a session's SET.
CREATE TABLE pyembed.settings (
    name       text PRIMARY KEY
               CHECK (name IN ('embed_mode', 'embed_url', 'embed_timeout_ms', 'python_path',
                               'cache_dir')),
    value      text NOT NULL,
    updated_by text NOT NULL DEFAULT current_user,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (name <> 'embed_mode' OR value IN ('http', 'local')),
    -- An http(s) URL without credentials; the admin who writes it is its allow-list.
    CHECK (name <> 'embed_url' OR value ~ '^https?://[A-Za-z0-9.\[\]:_-]+(/[A-Za-z0-9._~/-]*)?$'),
    CHECK (name <> 'embed_timeout_ms' OR value ~ '^[1-9][0-9]{0,6}$'),
    CHECK (name <> 'python_path' OR value !~ '[[:cntrl:]]'),
    CHECK (name <> 'cache_dir' OR value ~ '^/[^[:cntrl:]]*$')
);
COMMENT ON TABLE pyembed.settings IS
    'admin-only settings of in-database embedding: embed_mode, embed_url, embed_timeout_ms, '
    'python_path, cache_dir';

ALTER TABLE pyembed.query_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE pyembed.query_results ENABLE ROW LEVEL SECURITY;
ALTER TABLE pyembed.feedback ENABLE ROW LEVEL SECURITY;
