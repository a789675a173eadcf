-- Named queries for PostgreSQL. The server's clock is the one clock for every machine.

-- name: insert_job
INSERT INTO jobforge_jobs (
    id, type, queue, status, payload, priority, scheduled_at, attempts, max_attempts, timeout,
    tenant_id, trace_id, correlation_id, retry_backoff, retry_backoff_max, created_at, updated_at
) VALUES (
    %(id)s, %(type)s, %(queue)s, %(status)s, %(payload)s::jsonb, %(priority)s, %(scheduled_at)s,
    0, %(max_attempts)s, %(timeout)s, %(tenant_id)s, %(trace_id)s, %(correlation_id)s,
    %(retry_backoff)s, %(retry_backoff_max)s, %(created_at)s, %(created_at)s
)

-- name: notify
SELECT pg_notify('jobforge_jobs', %(queue)s)

-- name: claim_jobs
-- SKIP LOCKED lets many workers claim at once without waiting on each other's rows.
WITH picked AS (
    SELECT id FROM jobforge_jobs
    WHERE status IN ('queued', 'scheduled') AND scheduled_at <= now()
      AND type = ANY(%(types)s)
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobforge_jobs j
SET status = 'running', attempts = j.attempts + 1, worker_id = %(worker_id)s,
    lease_token = %(token)s, lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    started_at = now(), updated_at = now()
FROM picked WHERE j.id = picked.id
RETURNING j.*

-- name: finish_job
UPDATE jobforge_jobs
SET status = %(status)s, result = %(result)s::jsonb,
    result_url = coalesce(%(result_url)s, result_url),
    errors = coalesce(%(errors)s::jsonb, errors),
    scheduled_at = coalesce(%(scheduled_at)s, scheduled_at),
    attempts = attempts + %(attempt_delta)s, progress = coalesce(%(progress)s, progress),
    completed_at = CASE WHEN %(terminal)s THEN now() END,
    worker_id = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id = %(id)s AND status = 'running' AND lease_token = %(token)s
RETURNING id, queue, status

-- name: set_progress
UPDATE jobforge_jobs SET progress = %(progress)s, progress_message = %(message)s, updated_at = now()
WHERE id = %(id)s AND status = 'running' AND lease_token = %(token)s

-- name: extend_leases
UPDATE jobforge_jobs SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE worker_id = %(worker_id)s AND status = 'running'
RETURNING id

-- name: touch_worker
UPDATE jobforge_workers SET last_seen_at = now() WHERE id = %(worker_id)s

-- name: release_job
-- Graceful shutdown hands the job back without counting the attempt.
UPDATE jobforge_jobs
SET status = 'queued', attempts = attempts - 1, worker_id = NULL, lease_token = NULL,
    lease_expires_at = NULL, updated_at = now()
WHERE id = %(id)s AND status = 'running' AND lease_token = %(token)s
RETURNING queue

-- name: rescue_expired
UPDATE jobforge_jobs
SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
    errors = errors || jsonb_build_array(jsonb_build_object(
        'type', 'LeaseExpired',
        'message', 'worker ' || coalesce(worker_id, '?') || ' stopped heartbeating; lease expired',
        'traceback', NULL, 'attempt', attempts,
        'time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))),
    completed_at = CASE WHEN attempts >= max_attempts THEN now() END,
    worker_id = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id IN (
    SELECT id FROM jobforge_jobs WHERE status = 'running' AND lease_expires_at < now()
    FOR UPDATE SKIP LOCKED
)
RETURNING id, status, queue

-- name: cancel_job
UPDATE jobforge_jobs
SET status = 'cancelled', completed_at = now(), updated_at = now(),
    worker_id = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = %(id)s AND status IN ('scheduled', 'queued', 'waiting', 'running')
RETURNING *

-- name: retry_job
UPDATE jobforge_jobs
SET status = 'queued', attempts = 0, scheduled_at = now(), completed_at = NULL, result = NULL,
    progress = 0, progress_message = NULL, updated_at = now()
WHERE id = %(id)s AND status IN ('failed', 'cancelled', 'skipped')
RETURNING *

-- name: get_job
SELECT * FROM jobforge_jobs WHERE id = %(id)s

-- name: list_jobs
SELECT * FROM jobforge_jobs
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(type)s::text IS NULL OR type = %(type)s)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: next_due_at
SELECT min(scheduled_at) AS due FROM jobforge_jobs
WHERE status IN ('queued', 'scheduled')
  AND type = ANY(%(types)s)
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))

-- name: register_worker
INSERT INTO jobforge_workers (id, hostname, pid, queues, concurrency, started_at, last_seen_at)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, now(), now())

-- name: unregister_worker
DELETE FROM jobforge_workers WHERE id = %(worker_id)s

-- name: prune_workers
DELETE FROM jobforge_workers WHERE last_seen_at < now() - make_interval(secs => %(max_age)s)
