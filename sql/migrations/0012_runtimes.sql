-- 0012: runtimes. FROZEN once released.
-- A model version says which runtime executes its files: sentence-transformers (torch), or ONNX
-- Runtime for a version converted from one (`pyembed models convert`), at fp32 or with its weights
-- dynamically quantized to int8. A conversion is a version of the same family, with the version
-- it was converted from as its parent, so it is evaluated and switched to like any other.
ALTER TABLE pyembed.model_versions
    ADD COLUMN runtime text NOT NULL DEFAULT 'sentence-transformers'
        CHECK (runtime IN ('sentence-transformers', 'onnxruntime')),
    ADD COLUMN precision text NOT NULL DEFAULT 'fp32'
        CHECK (precision IN ('fp32', 'int8')),
    -- Only ONNX Runtime runs quantized weights here; a conversion always names its source.
    ADD CONSTRAINT model_versions_runtime_precision
        CHECK (precision = 'fp32' OR runtime = 'onnxruntime'),
    ADD CONSTRAINT model_versions_converted_parent
        CHECK (kind <> 'converted' OR parent_version_id IS NOT NULL);
ALTER TABLE pyembed.model_versions DROP CONSTRAINT model_versions_kind_check;
ALTER TABLE pyembed.model_versions ADD CONSTRAINT model_versions_kind_check
    CHECK (kind IN ('pretrained', 'fine_tuned', 'adapted', 'distilled', 'converted'));
COMMENT ON COLUMN pyembed.model_versions.runtime IS
    'what executes the files: sentence-transformers (torch) or onnxruntime';
COMMENT ON COLUMN pyembed.model_versions.precision IS
    'fp32, or int8 for weights quantized dynamically (onnxruntime only)';
