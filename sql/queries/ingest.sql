-- Named queries of the worker: leases, staging, writes, heartbeats, dead letters, automatic indexes.
-- Python runs them by name (pyembed.db.queries.get); the names are unique across sql/queries/.

-- name: claim_batch
-- Due items, fresh writes before backfills, oldest first; leased to this worker.
WITH next AS (
    SELECT q.id FROM pyembed.queue AS q
    WHERE q.next_attempt_at <= clock_timestamp()
      AND (q.lease_expires_at IS NULL OR q.lease_expires_at < clock_timestamp())
      AND q.attempts < %(max_attempts)s
      AND (%(collections)s::text[] IS NULL OR q.collection_id IN (
              SELECT c.id FROM pyembed.collections AS c WHERE c.name = ANY (%(collections)s)))
    ORDER BY q.priority, q.next_attempt_at, q.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE pyembed.queue AS q
SET lease_owner = %(worker)s,
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_seconds)s),
    attempts = q.attempts + 1
FROM next
WHERE q.id = next.id
RETURNING q.id, q.collection_id, q.pk, q.model_version_id, q.revision, q.attempts, q.operation;

-- name: bury_abandoned
-- Items whose lease expired max_attempts times: a worker died or hung on them every time.
WITH dead AS (
    DELETE FROM pyembed.queue AS q
    WHERE q.attempts >= %(max_attempts)s AND q.lease_expires_at < clock_timestamp()
    RETURNING q.*
)
INSERT INTO pyembed.failed_items (collection_id, pk, model_version_id, operation, attempts,
                                  last_error, first_enqueued_at)
SELECT collection_id, pk, model_version_id, operation, attempts,
       coalesce(last_error, '') || ' (lease expired ' || attempts
       || ' times: the worker died or hung while embedding this row)', enqueued_at
FROM dead;

-- name: lock_claimed
-- In the write transaction: the claimed items still leased to this worker, locked, with their
-- revision (a higher one than claimed means the row changed while it was being embedded).
-- In id order: two transactions locking rows in one order cannot wait on each other in a cycle.
SELECT id, revision FROM pyembed.queue
WHERE id = ANY (%(ids)s) AND lease_owner = %(worker)s
ORDER BY id
FOR UPDATE;

-- name: finish_items
DELETE FROM pyembed.queue WHERE id = ANY (%(ids)s) AND lease_owner = %(worker)s;

-- name: release_items
UPDATE pyembed.queue SET lease_owner = NULL, lease_expires_at = NULL
WHERE id = ANY (%(ids)s) AND lease_owner = %(worker)s;

-- name: retry_items
UPDATE pyembed.queue AS q
SET lease_owner = NULL, lease_expires_at = NULL, last_error = f.error,
    next_attempt_at = clock_timestamp()
                      + make_interval(secs => greatest(%(not_before_seconds)s,
                                                       least(%(backoff_seconds)s * 2 ^ (q.attempts - 1), 3600)))
FROM unnest(%(ids)s::bigint[], %(errors)s::text[]) AS f(id, error)
WHERE q.id = f.id AND q.lease_owner = %(worker)s;

-- name: bury_items
WITH dead AS (
    DELETE FROM pyembed.queue AS q
    USING unnest(%(ids)s::bigint[], %(errors)s::text[]) AS f(id, error)
    WHERE q.id = f.id AND q.lease_owner = %(worker)s
    RETURNING q.*, f.error
)
INSERT INTO pyembed.failed_items (collection_id, pk, model_version_id, operation, attempts,
                                  last_error, first_enqueued_at)
SELECT collection_id, pk, model_version_id, operation, attempts, error, enqueued_at FROM dead;

-- name: extend_leases
-- The heartbeat never waits: rows the worker's own write transaction holds are skipped (it
-- finishes or releases them; the next beat extends what it gave back). Waiting there deadlocked
-- with that transaction's row locks taken in another order.
UPDATE pyembed.queue
SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_seconds)s)
WHERE id IN (SELECT id FROM pyembed.queue WHERE lease_owner = %(worker)s
             ORDER BY id FOR UPDATE SKIP LOCKED);

-- name: collection_source_and_role
SELECT current_user::text, format('%%I.%%I', source_schema, source_table)
FROM pyembed.collections WHERE name = %(name)s;

-- name: collection_by_id
SELECT id, name, chunk_tokens, chunk_overlap, active_version_id, pending_version_id,
       (settings->>'adopted_version_id')::bigint AS adopted_version_id
FROM pyembed.collections WHERE id = %(id)s;

-- name: source_vectors
SELECT pk, embedding FROM pyembed.source_vectors(%(collection)s, %(keys)s);

-- name: create_staging
CREATE TEMP TABLE IF NOT EXISTS pyembed_chunks (
    version_id bigint NOT NULL,
    pk jsonb NOT NULL,
    chunk_seq integer NOT NULL,
    chunk text NOT NULL,
    embedding vector,
    content_hash bytea NOT NULL
) ON COMMIT DELETE ROWS;

-- name: copy_staging
COPY pyembed_chunks (version_id, pk, chunk_seq, chunk, embedding, content_hash)
FROM STDIN (FORMAT BINARY);

-- name: source_rows
SELECT pk, body, row_exists FROM pyembed.source_rows(%(collection)s, %(keys)s);

-- name: stored_hashes
SELECT pk, content_hash FROM pyembed.stored_hashes(%(collection)s, %(version_id)s, %(keys)s);

-- name: apply_chunks
SELECT pyembed.apply_chunks(%(collection)s, %(version_id)s, %(keys)s);

-- name: register_worker
INSERT INTO pyembed.workers (id, hostname, pid, collections, details)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(collections)s, %(details)s)
ON CONFLICT (id) DO UPDATE SET state = 'running', heartbeat_at = now(), stopped_at = NULL;

-- name: worker_heartbeat
UPDATE pyembed.workers
SET heartbeat_at = now(), state = %(state)s, rows_embedded = %(rows)s,
    chunks_written = %(chunks)s, batches = %(batches)s, failures = %(failures)s,
    last_error = %(last_error)s,
    stopped_at = CASE WHEN %(state)s = 'stopped' THEN now() END
WHERE id = %(id)s;

-- name: pending_count
SELECT count(*) FROM pyembed.queue AS q
WHERE %(collections)s::text[] IS NULL OR q.collection_id IN (
    SELECT c.id FROM pyembed.collections AS c WHERE c.name = ANY (%(collections)s));

-- name: failed_list
SELECT f.id, c.name AS collection, f.pk, f.attempts, f.last_error, f.failed_at
FROM pyembed.failed_items AS f JOIN pyembed.collections AS c ON c.id = f.collection_id
WHERE %(collection)s::text IS NULL OR c.name = %(collection)s
ORDER BY f.failed_at DESC, f.id DESC
LIMIT %(limit)s;

-- name: failed_retry
-- Move dead letters back into the queue (all of a collection, or the given ids).
WITH back AS (
    DELETE FROM pyembed.failed_items AS f
    USING pyembed.collections AS c
    WHERE c.id = f.collection_id
      AND (%(collection)s::text IS NULL OR c.name = %(collection)s)
      AND (%(ids)s::bigint[] IS NULL OR f.id = ANY (%(ids)s))
    RETURNING f.*
)
INSERT INTO pyembed.queue AS q (collection_id, pk, model_version_id, operation)
SELECT DISTINCT ON (collection_id, coalesce(model_version_id, 0), pk)
       collection_id, pk, model_version_id, operation
FROM back
ON CONFLICT (collection_id, coalesce(model_version_id, 0), pk) DO UPDATE
SET attempts = 0, next_attempt_at = clock_timestamp(), last_error = NULL,
    revision = q.revision + 1;

-- name: auto_index_due
SELECT id, name, method, options FROM pyembed.auto_index_due(%(ids)s::bigint[]);

-- name: try_collection_lock
SELECT pg_try_advisory_lock(%(key)s, %(collection_id)s);

-- name: collection_unlock
SELECT pg_advisory_unlock(%(key)s, %(collection_id)s);

-- name: work_channel
SELECT pyembed._work_channel();
