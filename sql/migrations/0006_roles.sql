-- 0006: roles. FROZEN once released.
-- Three group roles (NOLOGIN; grant them to login roles): pyembed_reader searches and records
-- feedback, pyembed_writer manages collections, pyembed_worker embeds. Roles are cluster-wide,
-- so another database may have created them already. Their grants live in
-- sql/idempotent/090_grants.sql, re-applied on every upgrade so new functions are covered.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['pyembed_reader', 'pyembed_writer', 'pyembed_worker'] LOOP
        IF to_regrole(role_name) IS NULL THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        END IF;
    END LOOP;
END
$$;

-- Functions are not executable by everyone: the grants say who may call what.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA pyembed FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA pyembed REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
