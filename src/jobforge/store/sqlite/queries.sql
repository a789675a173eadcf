-- Named queries for SQLite. Times are unix epoch seconds; lists are JSON arrays.

-- name: insert_job
-- Positional, in the column order of SQLStore._job_row (COPY uses the same).
INSERT INTO jobforge_jobs (
    id, type, queue, status, payload, priority, scheduled_at, max_attempts, timeout, tenant_id, trace_id, correlation_id, retry_backoff, retry_backoff_max, created_at, workflow_id, name, optional, dependency_deadline, dependency_status, pending_parents, depth, has_parallel_children, has_children, unique_key, updated_at
) VALUES (
    ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
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
  AND (:tenant IS NULL OR tenant_id = :tenant OR (:tenant = 'default' AND tenant_id IS NULL))
  AND (:before_at IS NULL OR (created_at, id) < (:before_at, :before_id))
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
-- Takes resolved edges off each child's count, and releases (the counter rule in deps.py)
-- the children whose count reaches zero, unless their workflow is paused: those stay
-- waiting, held.
UPDATE jobforge_jobs
SET pending_parents = pending_parents - u.n,
    status = CASE WHEN pending_parents <> u.n OR u.held THEN status
                  WHEN scheduled_at > :now THEN 'scheduled' ELSE 'queued' END,
    dependency_status = CASE WHEN pending_parents <> u.n OR u.held
                                  OR dependency_status <> 'waiting' THEN dependency_status
                             ELSE 'satisfied' END,
    reason = CASE WHEN pending_parents <> u.n OR u.held THEN reason END,
    updated_at = :now
FROM (
    SELECT c.value ->> 'id' AS id, c.value ->> 'n' AS n, EXISTS (
        SELECT 1 FROM jobforge_jobs k JOIN jobforge_workflows w ON w.id = k.workflow_id
        WHERE k.id = c.value ->> 'id' AND w.status = 'paused') AS held
    FROM json_each(:rows) AS c
) AS u
WHERE jobforge_jobs.id = u.id AND +jobforge_jobs.status = 'waiting'
RETURNING jobforge_jobs.id, status, workflow_id, queue, type

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
  AND (:tenant IS NULL OR tenant_id = :tenant OR (:tenant = 'default' AND tenant_id IS NULL))
  AND (:before_at IS NULL OR (created_at, id) < (:before_at, :before_id))
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

-- name: find_unique_jobs
SELECT id, tenant_id, unique_key FROM jobforge_jobs
WHERE unique_key IN (SELECT value FROM json_each(:keys))
  AND status IN ('scheduled', 'queued', 'waiting', 'running')

-- name: parent_jobs
SELECT j.* FROM jobforge_edges e JOIN jobforge_jobs j ON j.id = e.parent_id
WHERE e.child_id = :id ORDER BY j.created_at, j.id

-- name: insert_schedule
INSERT INTO jobforge_schedules (
    name, cron, timezone, target_kind, target, payload, depends_on, catch_up, source, next_run_at, created_at, updated_at
) VALUES (
    :name, :cron, :timezone, :target_kind, :target, :payload, :depends_on, :catch_up, :source, :next_run_at, :now, :now
)
ON CONFLICT (name) DO NOTHING
RETURNING name

-- name: sync_schedule
-- A schedule defined in code: its definition follows the code; its place in time is kept
-- unless its cron or timezone changed, so a restart neither skips nor repeats a tick.
INSERT INTO jobforge_schedules (
    name, cron, timezone, target_kind, target, payload, depends_on, catch_up, source, next_run_at, created_at, updated_at
) VALUES (
    :name, :cron, :timezone, :target_kind, :target, :payload, :depends_on, :catch_up, :source, :next_run_at, :now, :now
)
ON CONFLICT (name) DO UPDATE SET
    next_run_at = CASE
        WHEN jobforge_schedules.cron = excluded.cron AND jobforge_schedules.timezone = excluded.timezone
        THEN jobforge_schedules.next_run_at ELSE excluded.next_run_at END,
    cron = excluded.cron, timezone = excluded.timezone, target_kind = excluded.target_kind,
    target = excluded.target, payload = excluded.payload, depends_on = excluded.depends_on,
    catch_up = excluded.catch_up, source = excluded.source, updated_at = excluded.updated_at

-- name: list_schedules
SELECT * FROM jobforge_schedules ORDER BY name

-- name: get_schedule
SELECT * FROM jobforge_schedules WHERE name = :name

-- name: delete_schedule
DELETE FROM jobforge_schedules WHERE name = :name RETURNING name

-- name: pause_schedule
UPDATE jobforge_schedules SET paused = :paused, next_run_at = :next_run_at, updated_at = :now
WHERE name = :name RETURNING name

-- name: due_schedules
SELECT * FROM jobforge_schedules WHERE NOT paused AND next_run_at <= :now ORDER BY next_run_at

-- name: insert_schedule_run
-- The primary key (schedule, tick) lets exactly one worker fire a tick.
INSERT INTO jobforge_schedule_runs (schedule, tick, job_id, workflow_id, note, created_at)
VALUES (:schedule, :tick, :job_id, :workflow_id, :note, :now)
ON CONFLICT DO NOTHING
RETURNING schedule

-- name: advance_schedule
UPDATE jobforge_schedules SET next_run_at = :next_run_at, last_run_at = :tick, updated_at = :now
WHERE name = :name AND next_run_at <= :tick

-- name: last_schedule_run
SELECT * FROM jobforge_schedule_runs
WHERE schedule = :name AND tick >= :since AND tick <= :until
  AND (job_id IS NOT NULL OR workflow_id IS NOT NULL)
ORDER BY tick DESC LIMIT 1

-- name: schedule_runs
SELECT * FROM jobforge_schedule_runs WHERE schedule = :name ORDER BY tick DESC LIMIT :limit

-- name: count_running
SELECT count(*) AS n FROM jobforge_jobs
WHERE status = 'running' AND CASE WHEN :kind = 'type' THEN type ELSE queue END = :name

-- name: count_starts
SELECT count(*) AS n FROM jobforge_limit_starts WHERE scope = :scope AND started_at > :now - :per

-- name: claim_candidates
-- With limits, candidates are picked in run order and filtered by each limit's budget.
SELECT id, type, queue FROM jobforge_jobs INDEXED BY jobforge_jobs_ready
WHERE status IN ('queued', 'scheduled') AND scheduled_at <= :now
  AND type IN (SELECT value FROM json_each(:types))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND type NOT IN (SELECT value FROM json_each(:full_types))
  AND queue NOT IN (SELECT value FROM json_each(:full_queues))
ORDER BY priority DESC, scheduled_at, id
LIMIT :limit

-- name: claim_ids
UPDATE jobforge_jobs
SET status = 'running', attempts = attempts + 1, worker_id = :worker_id, lease_token = :token,
    lease_expires_at = :now + :lease_seconds, started_at = :now, updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND status IN ('queued', 'scheduled')
RETURNING *

-- name: log_start
INSERT INTO jobforge_limit_starts (scope, started_at) VALUES (:scope, :now)

-- name: prune_starts
DELETE FROM jobforge_limit_starts WHERE started_at < :before

-- name: prune_jobs
-- Finished jobs older than the cutoff whose workflow (if any) finished before it too, and
-- none of whose children is still to run: a pruned parent never strands a child.
DELETE FROM jobforge_jobs WHERE id IN (
    SELECT j.id FROM jobforge_jobs j INDEXED BY jobforge_jobs_created
    LEFT JOIN jobforge_workflows w ON w.id = j.workflow_id
    WHERE j.created_at < :before
      AND j.status IN ('succeeded', 'partial_success', 'failed', 'cancelled', 'skipped')
      AND coalesce(j.completed_at, j.updated_at) < :before
      AND (j.workflow_id IS NULL
           OR (w.status IN ('succeeded', 'failed', 'cancelled') AND w.completed_at < :before))
      AND NOT EXISTS (
          SELECT 1 FROM jobforge_edges e JOIN jobforge_jobs c ON c.id = e.child_id
          WHERE e.parent_id = j.id AND c.status IN ('scheduled', 'queued', 'waiting', 'running'))
    LIMIT :batch
)

-- name: prune_workflows
DELETE FROM jobforge_workflows
WHERE status IN ('succeeded', 'failed', 'cancelled') AND completed_at < :before
  AND NOT EXISTS (
      SELECT 1 FROM jobforge_jobs j WHERE j.workflow_id = jobforge_workflows.id)

-- name: prune_schedule_runs
DELETE FROM jobforge_schedule_runs WHERE tick < :before

-- name: insert_run
INSERT INTO jobforge_runs (
    id, name, version, input, status, idempotency_key, deadline, tenant_id, trace_id, created_at, updated_at
) VALUES (
    :id, :name, :version, :input, 'created', :idempotency_key, :deadline, :tenant_id, :trace_id, :now, :now
)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id

-- name: run_by_key
SELECT id FROM jobforge_runs WHERE idempotency_key = :key

-- name: get_run
SELECT * FROM jobforge_runs WHERE id = :id

-- name: list_runs
SELECT * FROM jobforge_runs WHERE (:status IS NULL OR status = :status)
  AND (:tenant IS NULL OR tenant_id = :tenant OR (:tenant = 'default' AND tenant_id IS NULL))
ORDER BY created_at DESC LIMIT :limit

-- name: run_steps
SELECT * FROM jobforge_steps WHERE run_id = :id ORDER BY seq, name

-- name: save_step
-- Fenced: only the worker whose claim of the run's job still holds may record a step.
INSERT INTO jobforge_steps (run_id, name, status, seq, input, result, error, attempts, started_at, completed_at)
SELECT :run_id, :name, :status, :seq, :input, :result, :error, :attempts, :started_at, :completed_at
WHERE EXISTS (
    SELECT 1 FROM jobforge_jobs WHERE id = :run_id AND lease_token = :token AND status = 'running')
ON CONFLICT (run_id, name) DO UPDATE SET
    status = excluded.status, seq = excluded.seq, result = excluded.result, error = excluded.error,
    attempts = excluded.attempts, completed_at = excluded.completed_at
RETURNING (SELECT cancel_requested FROM jobforge_jobs WHERE id = :run_id) AS cancel_requested

-- name: set_run
-- Fenced like the steps: only the worker whose claim of the run's job holds may write.
UPDATE jobforge_runs SET status = :status, current_step = :current_step,
    output = :output, error = :error,
    started_at = coalesce(started_at, :now), completed_at = :completed_at, updated_at = :now
WHERE id = :id AND EXISTS (
    SELECT 1 FROM jobforge_jobs j WHERE j.id = :id AND j.lease_token = :token AND j.status = 'running')
RETURNING id

-- name: reset_run
UPDATE jobforge_runs SET status = 'created', current_step = NULL, output = NULL, error = NULL,
    completed_at = NULL, updated_at = :now
WHERE id = :id

-- name: put_event
INSERT INTO jobforge_run_events (run_id, name, data, created_at)
VALUES (:run_id, :name, :data, :now)
ON CONFLICT (run_id, name) DO UPDATE SET data = excluded.data, created_at = excluded.created_at

-- name: get_event
SELECT data FROM jobforge_run_events WHERE run_id = :run_id AND name = :name

-- name: wake_job
-- A parked job (snoozed: scheduled) becomes runnable now.
UPDATE jobforge_jobs SET scheduled_at = :now, updated_at = :now
WHERE id = :id AND status = 'scheduled'
RETURNING queue

-- name: reset_steps
DELETE FROM jobforge_steps WHERE run_id = :id AND status <> 'completed'

-- name: prune_runs
DELETE FROM jobforge_runs
WHERE status IN ('completed', 'compensated', 'failed', 'cancelled') AND completed_at < :before
  AND NOT EXISTS (SELECT 1 FROM jobforge_jobs j WHERE j.id = jobforge_runs.id)

-- name: request_run_cancel
-- The run's next step boundary (or, when parked, its next replay, made due now) sees it.
UPDATE jobforge_jobs SET cancel_requested = 1, updated_at = :now,
    scheduled_at = CASE WHEN status = 'scheduled' THEN :now ELSE scheduled_at END
WHERE id = :id AND status IN ('scheduled', 'queued', 'running')
RETURNING queue

-- name: clear_cancel_request
UPDATE jobforge_jobs SET cancel_requested = 0 WHERE id = :id

-- name: rewake_parked_run
-- A run parked in this transaction, whose event (or cancel request) came in meanwhile, is
-- due now (SQLite's write lock orders this against the sender).
UPDATE jobforge_jobs SET scheduled_at = :now
WHERE id = :id AND status = 'scheduled'
  AND (cancel_requested OR EXISTS (
      SELECT 1 FROM jobforge_run_events e WHERE e.run_id = jobforge_jobs.id AND e.name = :event))
RETURNING queue

-- name: events_head
-- Ids are in commit order here: everything up to the largest id is final.
SELECT 0 AS txid, coalesce(max(id), 0) AS id FROM jobforge_events

-- name: events_after
SELECT 0 AS txid, id, kind, object_id, workflow_id, tenant_id, status, progress, at
FROM jobforge_events
WHERE id > :after_id AND id <= :horizon_id
  AND (:tenant IS NULL OR tenant_id = :tenant OR (:tenant = 'default' AND tenant_id IS NULL))
  AND (:kind IS NULL OR kind = :kind)
  AND (:object_id IS NULL OR object_id = :object_id)
  AND (:workflow_id IS NULL OR workflow_id = :workflow_id)
ORDER BY id
LIMIT :limit

-- name: edge_between
SELECT id FROM jobforge_edges WHERE parent_id = :parent AND child_id = :child

-- name: job_created_events
-- The feed's "created" events (updates come from the triggers of migration 0006).
INSERT INTO jobforge_events (kind, object_id, workflow_id, tenant_id, status, progress, at)
SELECT 'job', id, workflow_id, tenant_id, status, progress, updated_at FROM jobforge_jobs
WHERE rowid > :last - :n AND rowid <= :last

-- name: last_rowid
SELECT last_insert_rowid()

-- name: prune_events
-- Ids follow time: delete up to the first recent event, which reads only the old ones.
DELETE FROM jobforge_events WHERE id < coalesce(
    (SELECT id FROM jobforge_events WHERE at >= :before ORDER BY id LIMIT 1),
    (SELECT max(id) FROM jobforge_events)
)

-- name: insert_api_key
INSERT INTO jobforge_api_keys (id, tenant_id, name, permissions, hash, created_at)
VALUES (:id, :tenant_id, :name, :permissions, :hash, :now)

-- name: get_api_key
SELECT * FROM jobforge_api_keys WHERE id = :id

-- name: list_api_keys
SELECT * FROM jobforge_api_keys
WHERE (:tenant IS NULL OR tenant_id = :tenant)
ORDER BY created_at, id

-- name: revoke_api_key
UPDATE jobforge_api_keys SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL
RETURNING *

-- name: touch_api_key
UPDATE jobforge_api_keys SET last_used_at = :now WHERE id = :id

-- name: metrics_jobs
SELECT queue, status, count(*) AS n FROM jobforge_jobs GROUP BY queue, status

-- name: metrics_finished
-- Run times and outcomes of the jobs finished in the metrics window, by type.
SELECT type, status, completed_at - started_at AS seconds FROM jobforge_jobs
WHERE completed_at >= :since AND started_at IS NOT NULL
  AND status IN ('succeeded', 'partial_success', 'failed', 'cancelled')
LIMIT 100000

-- name: metrics_workflows
SELECT status, count(*) AS n FROM jobforge_workflows GROUP BY status

-- name: metrics_runs
SELECT status, count(*) AS n FROM jobforge_runs GROUP BY status

-- name: metrics_workers
SELECT count(*) AS n FROM jobforge_workers WHERE last_seen_at >= :since
