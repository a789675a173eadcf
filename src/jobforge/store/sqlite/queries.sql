-- Named queries for SQLite. Times are unix epoch seconds; lists are JSON arrays.

-- name: insert_job
-- Positional, in the column order of SQLStore._job_row (COPY uses the same).
INSERT INTO jobforge_jobs (
    id, type, queue, status, payload, priority, scheduled_at, max_attempts, timeout, tenant_id, trace_id, correlation_id, retry_backoff, retry_backoff_max, created_at, workflow_id, name, optional, dependency_deadline, dependency_status, pending_parents, depth, has_parallel_children, has_children, updated_at
) VALUES (
    ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
)

-- name: claim_jobs
-- One statement picks and marks the jobs, so two workers can never take the same row.
UPDATE jobforge_jobs
SET status = 'running', attempts = attempts + 1, worker_id = :worker_id, lease_token = :token,
    lease_expires_at = :now + :lease_seconds, started_at = :now, updated_at = :now
WHERE id IN (
    SELECT id FROM jobforge_jobs INDEXED BY jobforge_jobs_ready
    WHERE status IN ('queued', 'scheduled') AND scheduled_at <= :now
      AND type IN (SELECT value FROM json_each(:types))
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
    ORDER BY priority DESC, scheduled_at, id
    LIMIT :limit
)
RETURNING *

-- name: set_progress
UPDATE jobforge_jobs SET progress = :progress, progress_message = :message, updated_at = :now
WHERE id = :id AND status = 'running' AND lease_token = :token

-- name: extend_leases
UPDATE jobforge_jobs INDEXED BY jobforge_jobs_worker SET lease_expires_at = :now + :lease_seconds
WHERE worker_id = :worker_id AND status = 'running'
RETURNING id, cancel_requested

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
UPDATE jobforge_jobs INDEXED BY jobforge_jobs_leases
SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
    errors = json_insert(errors, '$[#]', json_object(
        'type', 'LeaseExpired',
        'message', 'worker ' || coalesce(worker_id, '?') || ' stopped heartbeating; lease expired',
        'traceback', NULL, 'attempt', attempts, 'time', :now_iso)),
    completed_at = CASE WHEN attempts >= max_attempts THEN :now ELSE NULL END,
    worker_id = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = :now
WHERE status = 'running' AND lease_expires_at < :now
RETURNING id, status, queue, result, started_at, workflow_id, optional, name, has_children

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
  AND (:dependency_status IS NULL OR dependency_status = :dependency_status)
  AND (:workflow_id IS NULL OR workflow_id = :workflow_id)
ORDER BY created_at DESC, id DESC
LIMIT :limit

-- name: next_due_at
SELECT min(scheduled_at) AS due FROM jobforge_jobs INDEXED BY jobforge_jobs_due
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

-- == dependencies =================================================================
-- Lists travel as JSON arrays; rows as JSON arrays of objects.

-- name: insert_edge
-- Positional, in the column order of SQLStore._edge_row.
INSERT INTO jobforge_edges (id, parent_id, child_id, kind, condition, workflow_id, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?)

-- name: lock_jobs
SELECT id, type, name, status, result, started_at, workflow_id, depth, optional, tenant_id, has_children
FROM jobforge_jobs WHERE id IN (SELECT value FROM json_each(:ids))

-- name: pending_edges_from
SELECT id, parent_id, child_id, kind, condition FROM jobforge_edges
WHERE status = 'pending' AND parent_id IN (SELECT value FROM json_each(:ids))

-- name: set_edges
UPDATE jobforge_edges SET status = u.status, resolved_at = :now, resolved_by = u.resolved_by
FROM (SELECT value ->> 'id' AS id, value ->> 'status' AS status,
             value ->> 'resolved_by' AS resolved_by
      FROM json_each(:rows)) AS u
WHERE jobforge_edges.id = u.id

-- name: decrement_pending
UPDATE jobforge_jobs SET pending_parents = pending_parents - u.n, updated_at = :now
FROM (SELECT value ->> 'id' AS id, value ->> 'n' AS n FROM json_each(:rows)) AS u
WHERE jobforge_jobs.id = u.id AND +jobforge_jobs.status = 'waiting'
RETURNING jobforge_jobs.id, status, pending_parents, workflow_id,
          (SELECT w.status FROM jobforge_workflows w
           WHERE w.id = jobforge_jobs.workflow_id) AS workflow_status

-- name: release_jobs
UPDATE jobforge_jobs
SET status = CASE WHEN scheduled_at > :now THEN 'scheduled' ELSE 'queued' END,
    dependency_status = CASE WHEN dependency_status = 'waiting' THEN 'satisfied'
                             ELSE dependency_status END,
    reason = NULL, updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND +status = 'waiting'
RETURNING queue, type

-- name: skip_jobs
UPDATE jobforge_jobs
SET status = 'skipped', dependency_status = 'failed', reason = u.reason,
    completed_at = :now, updated_at = :now
FROM (SELECT value ->> 'id' AS id, value ->> 'reason' AS reason FROM json_each(:rows)) AS u
WHERE jobforge_jobs.id = u.id AND +jobforge_jobs.status = 'waiting'
RETURNING jobforge_jobs.id, status, result, started_at, workflow_id, optional, name, has_children

-- name: cancel_edges_into
UPDATE jobforge_edges SET status = 'cancelled', resolved_at = :now, resolved_by = :by
WHERE child_id IN (SELECT value FROM json_each(:ids)) AND status = 'pending'

-- name: workflow_states
SELECT id, status, failure_policy FROM jobforge_workflows
WHERE id IN (SELECT value FROM json_each(:ids))

-- name: fail_workflow
UPDATE jobforge_workflows SET status = 'failed', cancel_reason = :reason, updated_at = :now
WHERE id = :id

-- name: cancel_workflow_jobs
UPDATE jobforge_jobs
SET status = 'cancelled', reason = :reason, completed_at = :now, updated_at = :now
WHERE workflow_id = :id AND status IN ('scheduled', 'queued', 'waiting')
RETURNING id, status, result, started_at, workflow_id, optional, name, has_children

-- name: request_cancel_running
UPDATE jobforge_jobs SET cancel_requested = 1, updated_at = :now
WHERE workflow_id = :id AND status = 'running'

-- name: cancel_workflow_edges
UPDATE jobforge_edges SET status = 'cancelled', resolved_at = :now, resolved_by = 'workflow'
WHERE workflow_id = :id AND status = 'pending'

-- name: pause_workflow
UPDATE jobforge_workflows SET status = 'paused', cancel_reason = :reason, updated_at = :now
WHERE id = :id

-- name: hold_workflow_jobs
UPDATE jobforge_jobs SET status = 'waiting', reason = :reason, updated_at = :now
WHERE workflow_id = :id AND status IN ('queued', 'scheduled')

-- name: complete_workflow
-- Runs on every settle; the NOT EXISTS probe uses the partial index of active jobs.
UPDATE jobforge_workflows
SET status = CASE
        WHEN status IN ('pending', 'running') THEN
            CASE WHEN EXISTS (SELECT 1 FROM jobforge_jobs
                              WHERE workflow_id = :id AND status = 'failed' AND NOT optional)
                 THEN 'failed' ELSE 'succeeded' END
        ELSE status END,
    completed_at = :now, updated_at = :now
WHERE id = :id AND completed_at IS NULL AND status IN ('pending', 'running', 'failed', 'cancelled')
  AND NOT EXISTS (SELECT 1 FROM jobforge_jobs WHERE workflow_id = :id
                  AND status IN ('scheduled', 'queued', 'waiting', 'running'))

-- name: start_workflows
UPDATE jobforge_workflows SET status = 'running', updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'pending'

-- name: insert_workflow
INSERT INTO jobforge_workflows (
    id, name, description, status, failure_policy, priority, timeout, deadline, metadata, tenant_id, trace_id, correlation_id, created_at, updated_at
) VALUES (
    :id, :name, :description, 'pending', :failure_policy, :priority, :timeout, :deadline, :metadata, :tenant_id, :trace_id, :correlation_id, :created_at, :created_at
)

-- name: mark_parents
UPDATE jobforge_jobs SET has_children = 1,
    has_parallel_children = has_parallel_children OR id IN (SELECT value FROM json_each(:parallel))
WHERE id IN (SELECT value FROM json_each(:ids))

-- == workflows and graph queries ==================================================

-- name: get_workflow
SELECT * FROM jobforge_workflows WHERE id = :id

-- name: list_workflows
SELECT * FROM jobforge_workflows
WHERE (:status IS NULL OR status = :status)
ORDER BY created_at DESC, id DESC
LIMIT :limit

-- name: workflow_counts
SELECT status, count(*) AS n FROM jobforge_jobs WHERE workflow_id = :id GROUP BY status

-- name: workflow_jobs
SELECT * FROM jobforge_jobs WHERE workflow_id = :id ORDER BY depth, created_at, name

-- name: workflow_edges
SELECT * FROM jobforge_edges WHERE workflow_id = :id

-- name: edges_into
SELECT * FROM jobforge_edges WHERE child_id = :id ORDER BY created_at, id

-- name: edges_from
SELECT * FROM jobforge_edges WHERE parent_id = :id ORDER BY created_at, id

-- name: get_edge
SELECT * FROM jobforge_edges WHERE id = :id

-- name: delete_edge
DELETE FROM jobforge_edges WHERE id = :id

-- name: ancestors
WITH RECURSIVE up(id) AS (
    SELECT parent_id FROM jobforge_edges WHERE child_id = :id
    UNION
    SELECT e.parent_id FROM jobforge_edges e JOIN up ON e.child_id = up.id
)
SELECT j.* FROM jobforge_jobs j JOIN up ON j.id = up.id ORDER BY j.depth, j.created_at

-- name: descendants
WITH RECURSIVE down(id) AS (
    SELECT child_id FROM jobforge_edges WHERE parent_id = :id
    UNION
    SELECT e.child_id FROM jobforge_edges e JOIN down ON e.parent_id = down.id
)
SELECT j.* FROM jobforge_jobs j JOIN down ON j.id = down.id ORDER BY j.depth, j.created_at

-- name: is_ancestor
-- Does :ancestor reach :id by following parents? (would a new edge close a cycle)
WITH RECURSIVE up(id) AS (
    SELECT parent_id FROM jobforge_edges WHERE child_id = :id
    UNION
    SELECT e.parent_id FROM jobforge_edges e JOIN up ON e.child_id = up.id
)
SELECT 1 AS found FROM up WHERE id = :ancestor LIMIT 1

-- name: add_pending_parent
UPDATE jobforge_jobs
SET pending_parents = pending_parents + 1, status = 'waiting', dependency_status = 'waiting',
    depth = max(depth, :depth), updated_at = :now
WHERE id = :id AND status IN ('waiting', 'queued', 'scheduled')

-- name: set_workflow_status
UPDATE jobforge_workflows
SET status = :status, cancel_reason = :reason, completed_at = :completed_at, updated_at = :now
WHERE id = :id

-- name: reset_workflow_jobs
-- Retry: failed, cancelled and skipped jobs wait again for their parents.
UPDATE jobforge_jobs
SET status = 'waiting', attempts = 0, result = NULL, reason = NULL, cancel_requested = 0,
    progress = 0, progress_message = NULL, completed_at = NULL, scheduled_at = :now,
    pending_parents = (SELECT count(*) FROM jobforge_edges e WHERE e.child_id = jobforge_jobs.id),
    dependency_status = CASE WHEN EXISTS (SELECT 1 FROM jobforge_edges e
                                          WHERE e.child_id = jobforge_jobs.id)
                             THEN 'waiting' ELSE 'none' END,
    updated_at = :now
WHERE workflow_id = :id AND status IN ('failed', 'cancelled', 'skipped')
RETURNING id, pending_parents

-- name: reset_edges_into
UPDATE jobforge_edges SET status = 'pending', resolved_at = NULL, resolved_by = NULL
WHERE child_id IN (SELECT value FROM json_each(:ids))

-- name: kept_parents
SELECT DISTINCT parent_id AS id FROM jobforge_edges
WHERE child_id IN (SELECT value FROM json_each(:ids))
  AND parent_id NOT IN (SELECT value FROM json_each(:ids))

-- name: held_jobs
SELECT id FROM jobforge_jobs
WHERE workflow_id = :id AND status = 'waiting' AND pending_parents = 0
  AND dependency_status <> 'failed'

-- name: failed_jobs_of_workflow
SELECT id, status, result, started_at, workflow_id, optional, name, has_children FROM jobforge_jobs
WHERE workflow_id = :id AND status = 'failed'

-- name: expire_waiting
UPDATE jobforge_jobs INDEXED BY jobforge_jobs_dependency_deadline
SET status = 'failed', dependency_status = 'failed', completed_at = :now, updated_at = :now,
    reason = 'dependency timeout: still waiting for ' || pending_parents
             || ' parent(s) at its deadline'
WHERE status = 'waiting' AND dependency_deadline < :now
RETURNING id, status, result, started_at, workflow_id, optional, name, has_children, queue

-- name: overdue_workflows
SELECT id FROM jobforge_workflows
WHERE status IN ('pending', 'running', 'paused') AND deadline < :now

-- name: edges_into_many
SELECT * FROM jobforge_edges WHERE child_id IN (SELECT value FROM json_each(:ids))

-- name: finish_many
-- Every outcome of a batch in one statement; each applies only while its claim holds.
UPDATE jobforge_jobs
SET status = u.status, result = u.result,
    errors = coalesce(u.errors, jobforge_jobs.errors),
    result_url = coalesce(u.result_url, jobforge_jobs.result_url),
    scheduled_at = coalesce(u.scheduled_at, jobforge_jobs.scheduled_at),
    attempts = jobforge_jobs.attempts + u.attempt_delta,
    progress = coalesce(u.progress, jobforge_jobs.progress),
    completed_at = CASE WHEN u.terminal THEN :now END,
    worker_id = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = :now
FROM (SELECT value ->> 'id' AS id, value ->> 'token' AS token, value ->> 'status' AS status,
             value ->> 'result' AS result, value ->> 'errors' AS errors,
             value ->> 'result_url' AS result_url, value ->> 'scheduled_at' AS scheduled_at,
             value ->> 'attempt_delta' AS attempt_delta, value ->> 'progress' AS progress,
             value ->> 'terminal' AS terminal
      FROM json_each(:rows)) AS u
WHERE jobforge_jobs.id = u.id AND +jobforge_jobs.status = 'running'
  AND jobforge_jobs.lease_token = u.token
RETURNING jobforge_jobs.id, queue, jobforge_jobs.status, jobforge_jobs.result, started_at,
          workflow_id, optional, name, has_children,
          -- A parent's pending edges come back with it (one statement fewer to settle it).
          CASE WHEN has_children THEN (
              SELECT json_group_array(json_array(e.id, e.kind, e.condition, e.child_id))
              FROM jobforge_edges e WHERE e.parent_id = jobforge_jobs.id AND e.status = 'pending'
          ) END AS pending_edges
