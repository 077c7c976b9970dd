-- 0021: endpoint models. FROZEN once released.
-- A model version can be an OpenAI-compatible embeddings endpoint instead of files: runtime
-- 'endpoint', artifact_source 'endpoint', its request settings in `endpoint` and their sha256 as
-- the artifact hash (a load checks it, as it checks files). No key is ever stored: `endpoint`
-- names the environment variable that holds it in the processes that embed. Which servers an
-- endpoint may be is the admin's list in pyembed.settings ('endpoint_origins', checked by
-- every process before it sends a key): writers register models, and without that list could
-- point a version at a server of their own and receive the worker's key.
ALTER TABLE pyembed.model_versions
    DROP CONSTRAINT model_versions_runtime_check,
    ADD CONSTRAINT model_versions_runtime_check
        CHECK (runtime IN ('sentence-transformers', 'onnxruntime', 'endpoint')),
    DROP CONSTRAINT model_versions_artifact_source_check,
    ADD CONSTRAINT model_versions_artifact_source_check
        CHECK (artifact_source IN ('database', 'endpoint')
               OR artifact_source ~ '^package:[A-Za-z_][A-Za-z0-9_.]*$'),
    ADD COLUMN endpoint jsonb,
    ADD CONSTRAINT model_versions_endpoint
        CHECK ((runtime = 'endpoint') = (endpoint IS NOT NULL)
               AND (runtime = 'endpoint') = (artifact_source = 'endpoint')),
    -- Settings, never secrets: a key under any of these names is refused outright.
    ADD CONSTRAINT model_versions_endpoint_shape
        CHECK (endpoint IS NULL
               OR (jsonb_typeof(endpoint) = 'object'
                   AND endpoint ?& ARRAY['base_url', 'model', 'dimensions']
                   AND NOT endpoint ?| ARRAY['api_key', 'key', 'token', 'secret', 'password',
                                             'authorization']));
-- What decides an endpoint version's vectors and where its key goes never changes, for anyone:
-- a writer (who may update version rows) would otherwise point a served version at another
-- model or another secret, and recompute the hash a load checks. Limits, batch size, timeout
-- and retries may be tuned in place.
CREATE FUNCTION pyembed._endpoint_settings_fixed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (OLD.runtime = 'endpoint' OR NEW.runtime = 'endpoint')
       AND (NEW.runtime IS DISTINCT FROM OLD.runtime
            OR NEW.artifact_source IS DISTINCT FROM OLD.artifact_source
            OR NEW.artifact_sha256 IS DISTINCT FROM OLD.artifact_sha256
            OR EXISTS (SELECT FROM unnest(ARRAY['base_url', 'model', 'dimensions',
                                                'send_dimensions', 'send_input_type',
                                                'api_key_env', 'key_header']) AS k
                       WHERE NEW.endpoint -> k IS DISTINCT FROM OLD.endpoint -> k)) THEN
        RAISE EXCEPTION 'the endpoint settings of model version % cannot change: they decide its '
                        'vectors and where its key is sent', OLD.id
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'register the new settings as a new version (pyembed models '
                         'register-endpoint); limits, batch size, timeout and retries may change';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER model_versions_endpoint_fixed BEFORE UPDATE ON pyembed.model_versions
    FOR EACH ROW EXECUTE FUNCTION pyembed._endpoint_settings_fixed();
COMMENT ON COLUMN pyembed.model_versions.endpoint IS
    'runtime endpoint: base_url, model, dimensions, api_key_env (a variable name, never a key), '
    'batch size, rate limits, timeout';

-- The origins (scheme://host[:port], space-separated) endpoint models may name. Unset or empty:
-- none, so a fresh install sends no key anywhere until the admin says where.
ALTER TABLE pyembed.settings
    DROP CONSTRAINT settings_name_check,
    ADD CONSTRAINT settings_name_check
        CHECK (name IN ('embed_mode', 'embed_url', 'embed_timeout_ms', 'python_path', 'cache_dir',
                        'endpoint_origins')),
    ADD CONSTRAINT settings_endpoint_origins_check
        CHECK (name <> 'endpoint_origins'
               OR value ~ '^ *(https?://[A-Za-z0-9.\[\]:_-]+ *)*$');
COMMENT ON TABLE pyembed.settings IS
    'admin-only settings of in-database embedding: embed_mode, embed_url, embed_timeout_ms, '
    'python_path, cache_dir; and endpoint_origins, the servers endpoint models may be';
