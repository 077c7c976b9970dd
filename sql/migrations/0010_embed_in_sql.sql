-- 0010: embedding text inside the database. FROZEN once released.
-- Only where the server has plpython3u: managed services without it keep everything else, and
-- embed query text in the application or with `pyembed serve`. The functions themselves live in
-- sql/idempotent/085_embed_in_sql.sql.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_available_extensions WHERE name = 'plpython3u') THEN
        CREATE EXTENSION IF NOT EXISTS plpython3u;
    ELSE
        RAISE NOTICE 'no plpython3u on this server: pyembed.embed(text) is not installed';
    END IF;
END
$$;
