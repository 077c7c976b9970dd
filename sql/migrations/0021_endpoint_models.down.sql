-- 0021 down: no endpoint models. A version that is an endpoint cannot become files: refuse
-- while one exists instead of deleting what collections may serve.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pyembed.model_versions WHERE runtime = 'endpoint') THEN
        RAISE EXCEPTION 'endpoint model versions exist: 0021 cannot be downgraded'
            USING HINT = 'switch their collections to a model with files, drop those collections '
                         'or delete the endpoint versions first';
    END IF;
END
$$;
DROP TRIGGER model_versions_endpoint_fixed ON pyembed.model_versions;
DROP FUNCTION pyembed._endpoint_settings_fixed();
ALTER TABLE pyembed.model_versions
    DROP CONSTRAINT model_versions_endpoint_shape,
    DROP CONSTRAINT model_versions_endpoint,
    DROP COLUMN endpoint,
    DROP CONSTRAINT model_versions_artifact_source_check,
    ADD CONSTRAINT model_versions_artifact_source_check
        CHECK (artifact_source = 'database' OR artifact_source ~ '^package:[A-Za-z_][A-Za-z0-9_.]*$'),
    DROP CONSTRAINT model_versions_runtime_check,
    ADD CONSTRAINT model_versions_runtime_check
        CHECK (runtime IN ('sentence-transformers', 'onnxruntime'));
DELETE FROM pyembed.settings WHERE name = 'endpoint_origins';
ALTER TABLE pyembed.settings
    DROP CONSTRAINT settings_endpoint_origins_check,
    DROP CONSTRAINT settings_name_check,
    ADD CONSTRAINT settings_name_check
        CHECK (name IN ('embed_mode', 'embed_url', 'embed_timeout_ms', 'python_path', 'cache_dir'));
COMMENT ON TABLE pyembed.settings IS
    'admin-only settings of in-database embedding: embed_mode, embed_url, embed_timeout_ms, '
    'python_path, cache_dir';
