-- Undo 0006: this database's grants to the roles, and the roles themselves unless another
-- database of the cluster still uses them.
ALTER DEFAULT PRIVILEGES IN SCHEMA pyembed GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pyembed TO PUBLIC;
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['pyembed_reader', 'pyembed_writer', 'pyembed_worker'] LOOP
        IF to_regrole(role_name) IS NOT NULL THEN
            EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA pyembed, pyembed_store FROM %I', role_name);
            EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pyembed FROM %I', role_name);
            EXECUTE format('REVOKE ALL ON SCHEMA pyembed, pyembed_store FROM %I', role_name);
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA pyembed_store REVOKE ALL ON TABLES FROM %I', role_name);
            BEGIN
                EXECUTE format('DROP ROLE %I', role_name);
            EXCEPTION WHEN dependent_objects_still_exist THEN
                RAISE NOTICE 'role % is still used by another database; kept', role_name;
            END;
        END IF;
    END LOOP;
END
$$;
