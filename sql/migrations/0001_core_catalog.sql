-- 0001: the core catalog. FROZEN once released: later changes go into a new revision.
--
-- Schemas: pyembed (catalog, queue, functions) and pyembed_store (one table per collection and
-- model version, created at run time). pgvector is required; pyembed.migrate checks for it first.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE SCHEMA pyembed;
CREATE SCHEMA pyembed_store;
COMMENT ON SCHEMA pyembed IS 'pyembed catalog: models, collections, queue, logs, evaluations';
COMMENT ON SCHEMA pyembed_store IS 'pyembed embeddings: one table per collection and model version';

-- A model family: what every version of it shares.
CREATE TABLE pyembed.models (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE
                    CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$'),
    base_model      text NOT NULL,
    dimensions      integer NOT NULL CHECK (dimensions BETWEEN 1 AND 16000),
    max_seq_length  integer NOT NULL CHECK (max_seq_length > 0),
    pooling         text NOT NULL DEFAULT 'mean'
                    CHECK (pooling IN ('mean', 'cls', 'max', 'lasttoken', 'weightedmean')),
    normalize       boolean NOT NULL DEFAULT true,
    query_prefix    text NOT NULL DEFAULT '',
    document_prefix text NOT NULL DEFAULT '',
    description     text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pyembed.models IS 'model families: base model, dimensions, pooling, prefixes';

-- A version of a model family: the pretrained weights, or one produced from a parent.
CREATE TABLE pyembed.model_versions (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id          bigint NOT NULL REFERENCES pyembed.models ON DELETE RESTRICT,
    version           integer NOT NULL CHECK (version > 0),
    parent_version_id bigint REFERENCES pyembed.model_versions ON DELETE RESTRICT,
    kind              text NOT NULL DEFAULT 'pretrained'
                      CHECK (kind IN ('pretrained', 'fine_tuned', 'adapted', 'distilled')),
    status            text NOT NULL DEFAULT 'uploading'
                      CHECK (status IN ('uploading', 'ready', 'retired')),
    -- 'database': files in pyembed.model_artifacts; 'package:MODULE': files shipped in a Python
    -- package every pyembed install has. Either way they are verified against artifact_sha256.
    artifact_source   text NOT NULL DEFAULT 'database'
                      CHECK (artifact_source = 'database' OR artifact_source ~ '^package:[A-Za-z_][A-Za-z0-9_.]*$'),
    artifact_sha256   text CHECK (artifact_sha256 ~ '^[0-9a-f]{64}$'),
    artifact_size     bigint CHECK (artifact_size >= 0),
    produced_by       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (model_id, version),
    -- A version is only usable once its whole artifact is stored and hashed.
    CHECK (status = 'uploading' OR (artifact_sha256 IS NOT NULL AND artifact_size IS NOT NULL)),
    CHECK (parent_version_id IS DISTINCT FROM id)
);
CREATE INDEX ON pyembed.model_versions (parent_version_id);
COMMENT ON TABLE pyembed.model_versions IS
    'versions of a model family with parent, status and the sha256 and size of their artifact';

-- The files of a version, split into parts so no single value nears the 1 GB bytea limit.
CREATE TABLE pyembed.model_artifacts (
    version_id bigint NOT NULL REFERENCES pyembed.model_versions ON DELETE CASCADE,
    path       text NOT NULL CHECK (path <> '' AND path !~ '(^/|\.\.)'),
    part       integer NOT NULL CHECK (part >= 0),
    data       bytea NOT NULL,
    PRIMARY KEY (version_id, path, part)
);
-- Weights do not compress: skip TOAST's compression attempt.
ALTER TABLE pyembed.model_artifacts ALTER COLUMN data SET STORAGE EXTERNAL;
COMMENT ON TABLE pyembed.model_artifacts IS 'model files as bytea parts, by version and path';

-- A registered source table and how its rows become embeddings.
CREATE TABLE pyembed.collections (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The name becomes part of store table names: keep it a short plain identifier.
    name                text NOT NULL UNIQUE CHECK (name ~ '^[a-z_][a-z0-9_]{0,39}$'),
    source_schema       text NOT NULL,
    source_table        text NOT NULL,
    pk_columns          text[] NOT NULL CHECK (cardinality(pk_columns) > 0),
    pk_types            text[] NOT NULL CHECK (cardinality(pk_types) = cardinality(pk_columns)),
    text_columns        text[],
    text_template       text,
    chunk_tokens        integer NOT NULL DEFAULT 256 CHECK (chunk_tokens > 0),
    chunk_overlap       integer NOT NULL DEFAULT 32 CHECK (chunk_overlap >= 0),
    distance            text NOT NULL DEFAULT 'cosine'
                        CHECK (distance IN ('cosine', 'l2', 'inner_product')),
    model_id            bigint NOT NULL REFERENCES pyembed.models ON DELETE RESTRICT,
    active_version_id   bigint REFERENCES pyembed.model_versions ON DELETE RESTRICT,
    pending_version_id  bigint REFERENCES pyembed.model_versions ON DELETE RESTRICT,
    index_method        text NOT NULL DEFAULT 'hnsw' CHECK (index_method IN ('hnsw', 'ivfflat', 'none')),
    index_options       jsonb NOT NULL DEFAULT '{}'::jsonb,
    auto_index_min_rows bigint CHECK (auto_index_min_rows >= 0),
    settings            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (chunk_overlap < chunk_tokens),
    CHECK ((text_columns IS NULL) <> (text_template IS NULL)),
    CHECK (pending_version_id IS DISTINCT FROM active_version_id)
);
COMMENT ON TABLE pyembed.collections IS
    'registered source tables: key, text to embed, chunking, distance, index and model versions';

-- Pending work. One row per (collection, source key, target version): a second change to the
-- same row before it is embedded bumps `revision` instead of adding a row, so the worker can
-- tell that the row changed while it was embedding it.
CREATE TABLE pyembed.queue (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id    bigint NOT NULL REFERENCES pyembed.collections ON DELETE CASCADE,
    pk               jsonb NOT NULL CHECK (jsonb_typeof(pk) = 'array'),
    -- NULL: every live version of the collection (active and pending); else a backfill target.
    model_version_id bigint REFERENCES pyembed.model_versions ON DELETE CASCADE,
    operation        text NOT NULL DEFAULT 'upsert' CHECK (operation IN ('upsert', 'delete')),
    priority         smallint NOT NULL DEFAULT 0,
    revision         bigint NOT NULL DEFAULT 1,
    enqueued_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    lease_owner      text,
    lease_expires_at timestamptz,
    last_error       text,
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
CREATE UNIQUE INDEX queue_item_key
    ON pyembed.queue (collection_id, coalesce(model_version_id, 0), pk);
-- What a worker claims next: due, by priority, oldest first.
CREATE INDEX queue_claim_order ON pyembed.queue (priority, next_attempt_at, id);
COMMENT ON TABLE pyembed.queue IS
    'rows waiting to be embedded, with attempts, next retry time, lease owner and expiry';

-- Dead letters: items that failed too often, kept with their error until retried or discarded.
CREATE TABLE pyembed.failed_items (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id    bigint NOT NULL REFERENCES pyembed.collections ON DELETE CASCADE,
    pk               jsonb NOT NULL CHECK (jsonb_typeof(pk) = 'array'),
    model_version_id bigint REFERENCES pyembed.model_versions ON DELETE CASCADE,
    operation        text NOT NULL CHECK (operation IN ('upsert', 'delete')),
    attempts         integer NOT NULL,
    last_error       text NOT NULL,
    first_enqueued_at timestamptz NOT NULL,
    failed_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON pyembed.failed_items (collection_id, failed_at);
COMMENT ON TABLE pyembed.failed_items IS 'queue items that exhausted their attempts, with the last error';

-- Running and past workers: heartbeats and progress.
CREATE TABLE pyembed.workers (
    id            text PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    collections   text[],
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz,
    state         text NOT NULL DEFAULT 'running'
                  CHECK (state IN ('running', 'stopping', 'stopped')),
    rows_embedded bigint NOT NULL DEFAULT 0,
    chunks_written bigint NOT NULL DEFAULT 0,
    batches       bigint NOT NULL DEFAULT 0,
    failures      bigint NOT NULL DEFAULT 0,
    last_error    text,
    details       jsonb NOT NULL DEFAULT '{}'::jsonb
);
COMMENT ON TABLE pyembed.workers IS 'embedding workers: heartbeat, state and progress counters';
