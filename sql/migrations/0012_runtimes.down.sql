-- Undo 0012. Revisions below it cannot run ONNX versions, so the downgrade refuses while any
-- exist rather than leave versions whose files no loader understands.
DO $$
DECLARE
    ids text;
BEGIN
    SELECT string_agg(id::text, ', ' ORDER BY id) INTO ids
    FROM pyembed.model_versions WHERE runtime <> 'sentence-transformers' OR kind = 'converted';
    IF ids IS NOT NULL THEN
        RAISE EXCEPTION 'model versions % run on ONNX Runtime, which revision 0011 cannot load', ids
            USING HINT = 'switch collections away from them and delete them from '
                         'pyembed.model_versions (with their eval and deployment rows) first';
    END IF;
END
$$;
ALTER TABLE pyembed.model_versions DROP CONSTRAINT model_versions_kind_check;
ALTER TABLE pyembed.model_versions ADD CONSTRAINT model_versions_kind_check
    CHECK (kind IN ('pretrained', 'fine_tuned', 'adapted', 'distilled'));
ALTER TABLE pyembed.model_versions
    DROP CONSTRAINT model_versions_converted_parent,
    DROP CONSTRAINT model_versions_runtime_precision,
    DROP COLUMN precision,
    DROP COLUMN runtime;
