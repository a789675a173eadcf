-- Named queries for SQLite. Times are unix epoch seconds; lists are JSON arrays.

-- name: insert_job
INSERT INTO jobforge_jobs (
    id, type, queue, status, payload, priority, scheduled_at, attempts, max_attempts, timeout,
    tenant_id, trace_id, correlation_id, retry_backoff, retry_backoff_max, created_at, updated_at
) VALUES (
    :id, :type, :queue, :status, :payload, :priority, :scheduled_at, 0, :max_attempts, :timeout,
    :tenant_id, :trace_id, :correlation_id, :retry_backoff, :retry_backoff_max, :created_at,
    :created_at
)

-- name: claim_jobs
-- One statement picks and marks the jobs, so two workers can never take the same row.
UPDATE jobforge_jobs
SET status = 'running', attempts = attempts + 1, worker_id = :worker_id, lease_token = :token,
    lease_expires_at = :now + :lease_seconds, started_at = :now, updated_at = :now
WHERE id IN (
    SELECT id FROM jobforge_jobs
    WHERE status IN ('queued', 'scheduled') AND scheduled_at <= :now
      AND type IN (SELECT value FROM json_each(:types))
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
    ORDER BY priority DESC, scheduled_at, id
    LIMIT :limit
)
RETURNING *

-- name: finish_job
UPDATE jobforge_jobs
SET status = :status, result = :result, errors = coalesce(:errors, errors),
    result_url = coalesce(:result_url, result_url),
    scheduled_at = coalesce(:scheduled_at, scheduled_at), attempts = attempts + :attempt_delta,
    progress = coalesce(:progress, progress), completed_at = CASE WHEN :terminal THEN :now END,
    worker_id = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = :now
WHERE id = :id AND status = 'running' AND lease_token = :token
RETURNING id, queue, status

-- name: set_progress
UPDATE jobforge_jobs SET progress = :progress, progress_message = :message, updated_at = :now
WHERE id = :id AND status = 'running' AND lease_token = :token

-- name: extend_leases
UPDATE jobforge_jobs SET lease_expires_at = :now + :lease_seconds
WHERE worker_id = :worker_id AND status = 'running'
RETURNING id

-- name: touch_worker
UPDATE jobforge_workers SET last_seen_at = :now WHERE id = :worker_id

-- name: release_job
-- Graceful shutdown hands the job back without counting the attempt.
UPDATE jobforge_jobs
SET status = 'queued', attempts = attempts - 1, worker_id = NULL, lease_token = NULL,
    lease_expires_at = NULL, updated_at = :now
WHERE id = :id AND status = 'running' AND lease_token = :token
RETURNING queue

-- name: rescue_expired
UPDATE jobforge_jobs
SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
    errors = json_insert(errors, '$[#]', json_object(
        'type', 'LeaseExpired',
        'message', 'worker ' || coalesce(worker_id, '?') || ' stopped heartbeating; lease expired',
        'traceback', NULL, 'attempt', attempts, 'time', :now_iso)),
    completed_at = CASE WHEN attempts >= max_attempts THEN :now ELSE NULL END,
    worker_id = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = :now
WHERE status = 'running' AND lease_expires_at < :now
RETURNING id, status, queue

-- name: cancel_job
UPDATE jobforge_jobs
SET status = 'cancelled', completed_at = :now, updated_at = :now,
    worker_id = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :id AND status IN ('scheduled', 'queued', 'waiting', 'running')
RETURNING *

-- name: retry_job
UPDATE jobforge_jobs
SET status = 'queued', attempts = 0, scheduled_at = :now, completed_at = NULL, result = NULL,
    progress = 0, progress_message = NULL, updated_at = :now
WHERE id = :id AND status IN ('failed', 'cancelled', 'skipped')
RETURNING *

-- name: get_job
SELECT * FROM jobforge_jobs WHERE id = :id

-- name: list_jobs
SELECT * FROM jobforge_jobs
WHERE (:status IS NULL OR status = :status)
  AND (:queue IS NULL OR queue = :queue)
  AND (:type IS NULL OR type = :type)
ORDER BY created_at DESC, id DESC
LIMIT :limit

-- name: next_due_at
SELECT min(scheduled_at) AS due FROM jobforge_jobs
WHERE status IN ('queued', 'scheduled')
  AND type IN (SELECT value FROM json_each(:types))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))

-- name: register_worker
INSERT INTO jobforge_workers (id, hostname, pid, queues, concurrency, started_at, last_seen_at)
VALUES (:id, :hostname, :pid, :queues, :concurrency, :now, :now)

-- name: unregister_worker
DELETE FROM jobforge_workers WHERE id = :worker_id

-- name: prune_workers
DELETE FROM jobforge_workers WHERE last_seen_at < :now - :max_age
