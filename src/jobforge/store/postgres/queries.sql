-- Named queries for PostgreSQL. The server's clock is the one clock for every machine.

-- name: insert_job
-- Positional, in the column order of SQLStore._job_row (COPY uses the same).
INSERT INTO jobforge_jobs (
    id, type, queue, status, payload, priority, scheduled_at, max_attempts, timeout, tenant_id, trace_id, correlation_id, retry_backoff, retry_backoff_max, created_at, workflow_id, name, optional, dependency_deadline, dependency_status, pending_parents, depth, has_parallel_children, has_children, unique_key, updated_at
) VALUES (
    %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s
)

-- name: notify
SELECT pg_notify('jobforge_jobs', %(queue)s)

-- name: sort_off
SET LOCAL enable_sort = off

-- name: sort_on
SET LOCAL enable_sort = on

-- name: claim_jobs
-- SKIP LOCKED lets many workers claim at once without waiting on each other's rows.
WITH picked AS (
    SELECT id FROM jobforge_jobs
    WHERE status IN ('queued', 'scheduled') AND scheduled_at <= now()
      AND type = ANY(%(types)s)
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
      -- Not a row last written by a younger transaction (a job enqueued while this one was
      -- finishing others): the change feed orders transactions by id, and would show the
      -- job running before it was created. The next claim takes it.
      AND age(xmin) >= 0
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobforge_jobs j
SET status = 'running', attempts = j.attempts + 1, worker_id = %(worker_id)s,
    lease_token = %(token)s, lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    -- Not now() (the transaction's start): this transaction may see parents that finished
    -- after it began, and a child must not look as if it started before its parent ended.
    started_at = clock_timestamp(), updated_at = now()
FROM picked WHERE j.id = picked.id
RETURNING j.*

-- name: set_progress
UPDATE jobforge_jobs SET progress = %(progress)s, progress_message = %(message)s, updated_at = now()
WHERE id = %(id)s AND status = 'running' AND lease_token = %(token)s

-- name: extend_leases
UPDATE jobforge_jobs SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE worker_id = %(worker_id)s AND status = 'running'
RETURNING id, cancel_requested

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
RETURNING id, status, queue, result, started_at, workflow_id, optional, name, has_children

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
  AND (%(dependency_status)s::text IS NULL OR dependency_status = %(dependency_status)s)
  AND (%(workflow_id)s::uuid IS NULL OR workflow_id = %(workflow_id)s)
  AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s OR (%(tenant)s = 'default' AND tenant_id IS NULL))
  AND (%(before_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(before_at)s::timestamptz, %(before_id)s::uuid))
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

-- == dependencies =================================================================

-- name: insert_edge
-- Positional, in the column order of SQLStore._edge_row.
INSERT INTO jobforge_edges (id, parent_id, child_id, kind, condition, workflow_id, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)

-- name: lock_jobs
-- FOR SHARE: a parent cannot finish while its new child's edges are being written, so the
-- finishing transaction always sees them (or the child sees it finished).
SELECT id, type, name, status, result, started_at, workflow_id, depth, optional, tenant_id, has_children
FROM jobforge_jobs WHERE id = ANY(%(ids)s::uuid[])
FOR SHARE

-- name: pending_edges_from
SELECT id, parent_id, child_id, kind, condition FROM jobforge_edges
WHERE status = 'pending' AND parent_id = ANY(%(ids)s::uuid[])

-- name: resolve_edges
-- Writes the edges' verdicts, takes resolved edges off each child's count, and releases
-- (the counter rule in deps.py) the children whose count reaches zero, unless their
-- workflow is paused: those stay waiting, held. The CASEs read j after its row lock (a
-- parent finishing at the same time in another transaction has been counted), so exactly
-- one of them releases the child. The jobs UPDATE reads no edge, so it does not matter that
-- it cannot see the CTE's writes.
WITH edges AS (
    UPDATE jobforge_edges e SET status = u.status, resolved_at = now(), resolved_by = u.resolved_by
    FROM jsonb_to_recordset(%(edges)s::jsonb) AS u(id uuid, status text, resolved_by text)
    WHERE e.id = u.id
)
UPDATE jobforge_jobs j
SET pending_parents = j.pending_parents - u.n,
    status = CASE WHEN j.pending_parents <> u.n OR u.held THEN j.status
                  WHEN j.scheduled_at > now() THEN 'scheduled' ELSE 'queued' END,
    dependency_status = CASE WHEN j.pending_parents <> u.n OR u.held
                                  OR j.dependency_status <> 'waiting' THEN j.dependency_status
                             ELSE 'satisfied' END,
    reason = CASE WHEN j.pending_parents <> u.n OR u.held THEN j.reason END,
    updated_at = now()
FROM (
    SELECT c.id, c.n, EXISTS (
        SELECT 1 FROM jobforge_jobs k JOIN jobforge_workflows w ON w.id = k.workflow_id
        WHERE k.id = c.id AND w.status = 'paused') AS held
    FROM jsonb_to_recordset(%(rows)s::jsonb) AS c(id uuid, n int)
) AS u
WHERE j.id = u.id AND j.status = 'waiting'
RETURNING j.id, j.status, j.workflow_id, j.queue, j.type

-- name: release_jobs
UPDATE jobforge_jobs
SET status = CASE WHEN scheduled_at > now() THEN 'scheduled' ELSE 'queued' END,
    dependency_status = CASE WHEN dependency_status = 'waiting' THEN 'satisfied'
                             ELSE dependency_status END,
    reason = NULL, updated_at = now()
WHERE id = ANY(%(ids)s::uuid[]) AND status = 'waiting'
RETURNING queue, type

-- name: skip_jobs
UPDATE jobforge_jobs j
SET status = 'skipped', dependency_status = 'failed', reason = u.reason,
    completed_at = now(), updated_at = now()
FROM jsonb_to_recordset(%(rows)s::jsonb) AS u(id uuid, reason text)
WHERE j.id = u.id AND j.status = 'waiting'
RETURNING j.id, j.status, j.result, j.started_at, j.workflow_id, j.optional, j.name, j.has_children

-- name: cancel_edges_into
UPDATE jobforge_edges SET status = 'cancelled', resolved_at = now(), resolved_by = %(by)s
WHERE child_id = ANY(%(ids)s::uuid[]) AND status = 'pending'

-- name: workflow_states
SELECT id, status, failure_policy FROM jobforge_workflows WHERE id = ANY(%(ids)s::uuid[])

-- name: fail_workflow
UPDATE jobforge_workflows SET status = 'failed', cancel_reason = %(reason)s, updated_at = now()
WHERE id = %(id)s

-- name: cancel_workflow_jobs
UPDATE jobforge_jobs
SET status = 'cancelled', reason = %(reason)s, completed_at = now(), updated_at = now()
WHERE workflow_id = %(id)s AND status IN ('scheduled', 'queued', 'waiting')
RETURNING id, status, result, started_at, workflow_id, optional, name, has_children

-- name: request_cancel_running
UPDATE jobforge_jobs SET cancel_requested = true, updated_at = now()
WHERE workflow_id = %(id)s AND status = 'running'

-- name: cancel_workflow_edges
UPDATE jobforge_edges SET status = 'cancelled', resolved_at = now(), resolved_by = 'workflow'
WHERE workflow_id = %(id)s AND status = 'pending'

-- name: pause_workflow
UPDATE jobforge_workflows SET status = 'paused', cancel_reason = %(reason)s, updated_at = now()
WHERE id = %(id)s

-- name: hold_workflow_jobs
UPDATE jobforge_jobs SET status = 'waiting', reason = %(reason)s, updated_at = now()
WHERE workflow_id = %(id)s AND status IN ('queued', 'scheduled')

-- name: complete_workflow
-- Runs on every settle; the NOT EXISTS probe uses the partial index of active jobs.
UPDATE jobforge_workflows
SET status = CASE
        WHEN status IN ('pending', 'running') THEN
            CASE WHEN EXISTS (SELECT 1 FROM jobforge_jobs
                              WHERE workflow_id = %(id)s AND status = 'failed' AND NOT optional)
                 THEN 'failed' ELSE 'succeeded' END
        ELSE status END,
    completed_at = now(), updated_at = now()
WHERE id = %(id)s AND completed_at IS NULL
  AND status IN ('pending', 'running', 'failed', 'cancelled')
  AND NOT EXISTS (SELECT 1 FROM jobforge_jobs WHERE workflow_id = %(id)s
                  AND status IN ('scheduled', 'queued', 'waiting', 'running'))

-- name: start_workflows
UPDATE jobforge_workflows SET status = 'running', updated_at = now()
WHERE id = ANY(%(ids)s::uuid[]) AND status = 'pending'

-- name: insert_workflow
INSERT INTO jobforge_workflows (
    id, name, description, status, failure_policy, priority, timeout, deadline, metadata, tenant_id, trace_id, correlation_id, created_at, updated_at
) VALUES (
    %(id)s, %(name)s, %(description)s, 'pending', %(failure_policy)s, %(priority)s, %(timeout)s, %(deadline)s, %(metadata)s::jsonb, %(tenant_id)s, %(trace_id)s, %(correlation_id)s, %(created_at)s, %(created_at)s
)

-- name: mark_parents
UPDATE jobforge_jobs SET has_children = true,
    has_parallel_children = has_parallel_children OR id = ANY(%(parallel)s::uuid[])
WHERE id = ANY(%(ids)s::uuid[])

-- == workflows and graph queries ==================================================

-- name: get_workflow
SELECT * FROM jobforge_workflows WHERE id = %(id)s

-- name: list_workflows
SELECT * FROM jobforge_workflows
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s OR (%(tenant)s = 'default' AND tenant_id IS NULL))
  AND (%(before_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(before_at)s::timestamptz, %(before_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: workflow_counts
SELECT status, count(*) AS n FROM jobforge_jobs WHERE workflow_id = %(id)s GROUP BY status

-- name: workflow_jobs
SELECT * FROM jobforge_jobs WHERE workflow_id = %(id)s ORDER BY depth, created_at, name

-- name: workflow_edges
SELECT * FROM jobforge_edges WHERE workflow_id = %(id)s

-- name: edges_into
SELECT * FROM jobforge_edges WHERE child_id = %(id)s ORDER BY created_at, id

-- name: edges_from
SELECT * FROM jobforge_edges WHERE parent_id = %(id)s ORDER BY created_at, id

-- name: get_edge
SELECT * FROM jobforge_edges WHERE id = %(id)s

-- name: delete_edge
DELETE FROM jobforge_edges WHERE id = %(id)s

-- name: ancestors
WITH RECURSIVE up(id) AS (
    SELECT parent_id FROM jobforge_edges WHERE child_id = %(id)s
    UNION
    SELECT e.parent_id FROM jobforge_edges e JOIN up ON e.child_id = up.id
)
SELECT j.* FROM jobforge_jobs j JOIN up ON j.id = up.id ORDER BY j.depth, j.created_at

-- name: descendants
WITH RECURSIVE down(id) AS (
    SELECT child_id FROM jobforge_edges WHERE parent_id = %(id)s
    UNION
    SELECT e.child_id FROM jobforge_edges e JOIN down ON e.parent_id = down.id
)
SELECT j.* FROM jobforge_jobs j JOIN down ON j.id = down.id ORDER BY j.depth, j.created_at

-- name: is_ancestor
-- Does %(ancestor)s reach %(id)s by following parents? (would a new edge close a cycle)
WITH RECURSIVE up(id) AS (
    SELECT parent_id FROM jobforge_edges WHERE child_id = %(id)s
    UNION
    SELECT e.parent_id FROM jobforge_edges e JOIN up ON e.child_id = up.id
)
SELECT 1 AS found FROM up WHERE id = %(ancestor)s LIMIT 1

-- name: add_pending_parent
UPDATE jobforge_jobs
SET pending_parents = pending_parents + 1, status = 'waiting', dependency_status = 'waiting',
    depth = greatest(depth, %(depth)s), updated_at = now()
WHERE id = %(id)s AND status IN ('waiting', 'queued', 'scheduled')

-- name: set_workflow_status
UPDATE jobforge_workflows
SET status = %(status)s, cancel_reason = %(reason)s, completed_at = %(completed_at)s,
    updated_at = now()
WHERE id = %(id)s

-- name: reset_workflow_jobs
-- Retry: failed, cancelled and skipped jobs wait again for their parents.
UPDATE jobforge_jobs j
SET status = 'waiting', attempts = 0, result = NULL, reason = NULL, cancel_requested = false,
    progress = 0, progress_message = NULL, completed_at = NULL, scheduled_at = now(),
    pending_parents = (SELECT count(*) FROM jobforge_edges e WHERE e.child_id = j.id),
    dependency_status = CASE WHEN EXISTS (SELECT 1 FROM jobforge_edges e WHERE e.child_id = j.id)
                             THEN 'waiting' ELSE 'none' END,
    updated_at = now()
WHERE workflow_id = %(id)s AND status IN ('failed', 'cancelled', 'skipped')
RETURNING id, pending_parents

-- name: reset_edges_into
UPDATE jobforge_edges SET status = 'pending', resolved_at = NULL, resolved_by = NULL
WHERE child_id = ANY(%(ids)s::uuid[])

-- name: kept_parents
SELECT DISTINCT parent_id AS id FROM jobforge_edges
WHERE child_id = ANY(%(ids)s::uuid[]) AND NOT (parent_id = ANY(%(ids)s::uuid[]))

-- name: held_jobs
SELECT id FROM jobforge_jobs
WHERE workflow_id = %(id)s AND status = 'waiting' AND pending_parents = 0
  AND dependency_status <> 'failed'

-- name: failed_jobs_of_workflow
SELECT id, status, result, started_at, workflow_id, optional, name, has_children FROM jobforge_jobs
WHERE workflow_id = %(id)s AND status = 'failed'

-- name: expire_waiting
UPDATE jobforge_jobs
SET status = 'failed', dependency_status = 'failed', completed_at = now(), updated_at = now(),
    reason = 'dependency timeout: still waiting for ' || pending_parents
             || ' parent(s) at its deadline'
WHERE id IN (SELECT id FROM jobforge_jobs WHERE status = 'waiting' AND dependency_deadline < now()
             FOR UPDATE SKIP LOCKED)
RETURNING id, status, result, started_at, workflow_id, optional, name, has_children, queue

-- name: overdue_workflows
SELECT id FROM jobforge_workflows
WHERE status IN ('pending', 'running', 'paused') AND deadline < now()

-- name: edges_into_many
SELECT * FROM jobforge_edges WHERE child_id = ANY(%(ids)s::uuid[])

-- name: finish_many
-- Every outcome of a batch in one statement; each applies only while its claim holds.
UPDATE jobforge_jobs j
SET status = u.status, result = u.result::jsonb, errors = coalesce(u.errors::jsonb, j.errors),
    result_url = coalesce(u.result_url, j.result_url),
    scheduled_at = coalesce(u.scheduled_at, j.scheduled_at),
    attempts = j.attempts + u.attempt_delta, progress = coalesce(u.progress, j.progress),
    completed_at = CASE WHEN u.terminal THEN now() END,
    worker_id = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = now()
FROM jsonb_to_recordset(%(rows)s::jsonb) AS u(
    id uuid, token text, status text, result text, errors text, result_url text,
    scheduled_at timestamptz, attempt_delta int, progress int, terminal boolean)
WHERE j.id = u.id AND j.status = 'running' AND j.lease_token = u.token
RETURNING j.id, j.queue, j.status, j.result, j.started_at, j.workflow_id, j.optional, j.name, j.has_children,
    -- A parent's pending edges come back with it: settling it needs no second round trip.
    CASE WHEN j.has_children THEN (
        SELECT coalesce(jsonb_agg(jsonb_build_array(e.id, e.kind, e.condition, e.child_id)), '[]')
        FROM jobforge_edges e WHERE e.parent_id = j.id AND e.status = 'pending'
    ) END AS pending_edges

-- name: copy_jobs
-- Bulk path for large batches (COPY is several times faster than INSERT), in the column
-- order of SQLStore._job_rows.
COPY jobforge_jobs (
    id, type, queue, status, payload, priority, scheduled_at, max_attempts, timeout, tenant_id, trace_id, correlation_id, retry_backoff, retry_backoff_max, created_at, workflow_id, name, optional, dependency_deadline, dependency_status, pending_parents, depth, has_parallel_children, has_children, unique_key, updated_at
) FROM STDIN (FORMAT BINARY)

-- name: copy_edges
COPY jobforge_edges (id, parent_id, child_id, kind, condition, workflow_id, created_at)
FROM STDIN (FORMAT BINARY)

-- name: column_types
-- The types of a table's columns, for binary COPY.
SELECT attname AS name, atttypid::int AS oid FROM pg_attribute
WHERE attrelid = %(table)s::regclass AND attnum > 0 AND NOT attisdropped

-- name: lock_keys
-- Transaction-scoped locks on names (unique keys, limit scopes), taken in sorted order.
SELECT pg_advisory_xact_lock(hashtextextended(k, 42))
FROM (SELECT k FROM unnest(%(keys)s::text[]) AS k ORDER BY k) AS sorted

-- name: find_unique_jobs
SELECT id, tenant_id, unique_key FROM jobforge_jobs
WHERE unique_key = ANY(%(keys)s::text[])
  AND status IN ('scheduled', 'queued', 'waiting', 'running')

-- name: parent_jobs
SELECT j.* FROM jobforge_edges e JOIN jobforge_jobs j ON j.id = e.parent_id
WHERE e.child_id = %(id)s ORDER BY j.created_at, j.id

-- name: insert_schedule
INSERT INTO jobforge_schedules (
    name, cron, timezone, target_kind, target, payload, depends_on, catch_up, source, next_run_at, created_at, updated_at
) VALUES (
    %(name)s, %(cron)s, %(timezone)s, %(target_kind)s, %(target)s, %(payload)s::jsonb, %(depends_on)s::jsonb, %(catch_up)s, %(source)s, %(next_run_at)s, %(now)s, %(now)s
)
ON CONFLICT (name) DO NOTHING
RETURNING name

-- name: sync_schedule
-- A schedule defined in code: its definition follows the code; its place in time is kept
-- unless its cron or timezone changed, so a restart neither skips nor repeats a tick.
INSERT INTO jobforge_schedules (
    name, cron, timezone, target_kind, target, payload, depends_on, catch_up, source, next_run_at, created_at, updated_at
) VALUES (
    %(name)s, %(cron)s, %(timezone)s, %(target_kind)s, %(target)s, %(payload)s::jsonb, %(depends_on)s::jsonb, %(catch_up)s, %(source)s, %(next_run_at)s, %(now)s, %(now)s
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
SELECT * FROM jobforge_schedules WHERE name = %(name)s

-- name: delete_schedule
DELETE FROM jobforge_schedules WHERE name = %(name)s RETURNING name

-- name: pause_schedule
UPDATE jobforge_schedules SET paused = %(paused)s, next_run_at = %(next_run_at)s, updated_at = %(now)s
WHERE name = %(name)s RETURNING name

-- name: due_schedules
SELECT * FROM jobforge_schedules WHERE NOT paused AND next_run_at <= %(now)s ORDER BY next_run_at

-- name: insert_schedule_run
-- The primary key (schedule, tick) lets exactly one worker fire a tick.
INSERT INTO jobforge_schedule_runs (schedule, tick, job_id, workflow_id, note, created_at)
VALUES (%(schedule)s, %(tick)s, %(job_id)s, %(workflow_id)s, %(note)s, %(now)s)
ON CONFLICT DO NOTHING
RETURNING schedule

-- name: advance_schedule
UPDATE jobforge_schedules SET next_run_at = %(next_run_at)s, last_run_at = %(tick)s, updated_at = %(now)s
WHERE name = %(name)s AND next_run_at <= %(tick)s

-- name: last_schedule_run
SELECT * FROM jobforge_schedule_runs
WHERE schedule = %(name)s AND tick >= %(since)s AND tick <= %(until)s
  AND (job_id IS NOT NULL OR workflow_id IS NOT NULL)
ORDER BY tick DESC LIMIT 1

-- name: schedule_runs
SELECT * FROM jobforge_schedule_runs WHERE schedule = %(name)s ORDER BY tick DESC LIMIT %(limit)s

-- name: count_running
SELECT count(*) AS n FROM jobforge_jobs
WHERE status = 'running' AND CASE WHEN %(kind)s = 'type' THEN type ELSE queue END = %(name)s

-- name: count_starts
-- The server's clock, read after the scope's lock: one clock for every worker machine.
SELECT count(*) AS n FROM jobforge_limit_starts
WHERE scope = %(scope)s AND started_at > clock_timestamp() - make_interval(secs => %(per)s)

-- name: claim_candidates
-- With limits, candidates are picked in run order and filtered by each limit's budget.
SELECT id, type, queue FROM jobforge_jobs
WHERE status IN ('queued', 'scheduled') AND scheduled_at <= now()
  AND type = ANY(%(types)s)
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND NOT type = ANY(%(full_types)s::text[]) AND NOT queue = ANY(%(full_queues)s::text[])
  AND age(xmin) >= 0  -- as in claim_jobs
ORDER BY priority DESC, scheduled_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: claim_ids
UPDATE jobforge_jobs
SET status = 'running', attempts = attempts + 1, worker_id = %(worker_id)s,
    lease_token = %(token)s, lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    started_at = clock_timestamp(), updated_at = now()
WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('queued', 'scheduled')
RETURNING *

-- name: log_start
INSERT INTO jobforge_limit_starts (scope, started_at) VALUES (%(scope)s, clock_timestamp())

-- name: prune_starts
DELETE FROM jobforge_limit_starts WHERE started_at < %(before)s

-- name: prune_jobs
-- Finished jobs older than the cutoff whose workflow (if any) finished before it too, and
-- none of whose children is still to run: a pruned parent never strands a child.
DELETE FROM jobforge_jobs WHERE id IN (
    SELECT j.id FROM jobforge_jobs j
    LEFT JOIN jobforge_workflows w ON w.id = j.workflow_id
    WHERE j.created_at < %(before)s
      AND j.status IN ('succeeded', 'partial_success', 'failed', 'cancelled', 'skipped')
      AND coalesce(j.completed_at, j.updated_at) < %(before)s
      AND (j.workflow_id IS NULL
           OR (w.status IN ('succeeded', 'failed', 'cancelled') AND w.completed_at < %(before)s))
      AND NOT EXISTS (
          SELECT 1 FROM jobforge_edges e JOIN jobforge_jobs c ON c.id = e.child_id
          WHERE e.parent_id = j.id AND c.status IN ('scheduled', 'queued', 'waiting', 'running'))
    LIMIT %(batch)s
)

-- name: prune_workflows
DELETE FROM jobforge_workflows w
WHERE w.status IN ('succeeded', 'failed', 'cancelled') AND w.completed_at < %(before)s
  AND NOT EXISTS (SELECT 1 FROM jobforge_jobs j WHERE j.workflow_id = w.id)

-- name: prune_schedule_runs
DELETE FROM jobforge_schedule_runs WHERE tick < %(before)s

-- name: insert_run
INSERT INTO jobforge_runs (
    id, name, version, input, status, idempotency_key, deadline, tenant_id, trace_id, created_at, updated_at
) VALUES (
    %(id)s, %(name)s, %(version)s, %(input)s::jsonb, 'created', %(idempotency_key)s, %(deadline)s, %(tenant_id)s, %(trace_id)s, %(now)s, %(now)s
)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id

-- name: run_by_key
SELECT id FROM jobforge_runs WHERE idempotency_key = %(key)s

-- name: get_run
SELECT * FROM jobforge_runs WHERE id = %(id)s

-- name: list_runs
SELECT * FROM jobforge_runs WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s OR (%(tenant)s = 'default' AND tenant_id IS NULL))
ORDER BY created_at DESC LIMIT %(limit)s

-- name: run_steps
SELECT * FROM jobforge_steps WHERE run_id = %(id)s ORDER BY seq, name

-- name: save_step
-- Fenced: only the worker whose claim of the run's job still holds may record a step.
INSERT INTO jobforge_steps (run_id, name, status, seq, input, result, error, attempts, started_at, completed_at)
SELECT %(run_id)s, %(name)s, %(status)s, %(seq)s, %(input)s::jsonb, %(result)s::jsonb, %(error)s::jsonb,
       %(attempts)s, %(started_at)s, %(completed_at)s
WHERE EXISTS (
    SELECT 1 FROM jobforge_jobs WHERE id = %(run_id)s AND lease_token = %(token)s AND status = 'running')
ON CONFLICT (run_id, name) DO UPDATE SET
    status = excluded.status, seq = excluded.seq, result = excluded.result, error = excluded.error,
    attempts = excluded.attempts, completed_at = excluded.completed_at
RETURNING (SELECT cancel_requested FROM jobforge_jobs WHERE id = %(run_id)s) AS cancel_requested

-- name: set_run
-- Fenced like the steps: only the worker whose claim of the run's job holds may write.
UPDATE jobforge_runs SET status = %(status)s, current_step = %(current_step)s,
    output = %(output)s::jsonb, error = %(error)s::jsonb,
    started_at = coalesce(started_at, %(now)s), completed_at = %(completed_at)s, updated_at = %(now)s
WHERE id = %(id)s AND EXISTS (
    SELECT 1 FROM jobforge_jobs j
    WHERE j.id = %(id)s AND j.lease_token = %(token)s AND j.status = 'running')
RETURNING id

-- name: reset_run
UPDATE jobforge_runs SET status = 'created', current_step = NULL, output = NULL, error = NULL,
    completed_at = NULL, updated_at = now()
WHERE id = %(id)s

-- name: put_event
INSERT INTO jobforge_run_events (run_id, name, data, created_at)
VALUES (%(run_id)s, %(name)s, %(data)s::jsonb, %(now)s)
ON CONFLICT (run_id, name) DO UPDATE SET data = excluded.data, created_at = excluded.created_at

-- name: get_event
SELECT data FROM jobforge_run_events WHERE run_id = %(run_id)s AND name = %(name)s

-- name: wake_job
-- A parked job (snoozed: scheduled) becomes runnable now.
UPDATE jobforge_jobs SET scheduled_at = now(), updated_at = now()
WHERE id = %(id)s AND status = 'scheduled'
RETURNING queue

-- name: reset_steps
DELETE FROM jobforge_steps WHERE run_id = %(id)s AND status <> 'completed'

-- name: prune_runs
DELETE FROM jobforge_runs
WHERE status IN ('completed', 'compensated', 'failed', 'cancelled') AND completed_at < %(before)s
  AND NOT EXISTS (SELECT 1 FROM jobforge_jobs j WHERE j.id = jobforge_runs.id)

-- name: request_run_cancel
-- The run's next step boundary (or, when parked, its next replay, made due now) sees it.
UPDATE jobforge_jobs SET cancel_requested = true, updated_at = now(),
    scheduled_at = CASE WHEN status = 'scheduled' THEN now() ELSE scheduled_at END
WHERE id = %(id)s AND status IN ('scheduled', 'queued', 'running')
RETURNING queue

-- name: clear_cancel_request
UPDATE jobforge_jobs SET cancel_requested = false WHERE id = %(id)s

-- name: rewake_parked_run
-- A run parked in this transaction, whose event (or cancel request) came in meanwhile, is
-- due now: with the run's lock held by both sides, no wake-up falls between them.
UPDATE jobforge_jobs j SET scheduled_at = now()
WHERE id = %(id)s AND status = 'scheduled'
  AND (cancel_requested OR EXISTS (
      SELECT 1 FROM jobforge_run_events e WHERE e.run_id = j.id AND e.name = %(event)s))
RETURNING queue

-- name: events_head
-- Every transaction below the snapshot's xmin has ended: its events are final.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS txid, 0 AS id

-- name: events_after
SELECT txid::text AS txid, id, kind, object_id, workflow_id, tenant_id, status, progress, at
FROM jobforge_events
WHERE (txid, id) > (%(after_txid)s::text::xid8, %(after_id)s::bigint)
  AND txid < %(horizon_txid)s::text::xid8
  AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s OR (%(tenant)s = 'default' AND tenant_id IS NULL))
  AND (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(object_id)s::uuid IS NULL OR object_id = %(object_id)s)
  AND (%(workflow_id)s::uuid IS NULL OR workflow_id = %(workflow_id)s)
ORDER BY txid, id
LIMIT %(limit)s

-- name: edge_between
SELECT id FROM jobforge_edges WHERE parent_id = %(parent)s AND child_id = %(child)s

-- name: job_created_events
-- The feed's "created" events (updates come from the triggers of migration 0006).
WITH added AS (
    INSERT INTO jobforge_events (kind, object_id, tenant_id, status, progress, at)
    SELECT 'job', u.id, u.tenant, u.status, 0, u.at
    FROM unnest(%(ids)s::uuid[], %(tenants)s::text[], %(statuses)s::text[],
                %(ats)s::timestamptz[]) AS u (id, tenant, status, at)
    RETURNING 1
)
SELECT pg_notify('jobforge_events', '') FROM (SELECT 1 FROM added LIMIT 1) AS any_added

-- name: prune_events
DELETE FROM jobforge_events WHERE at < %(before)s

-- name: insert_api_key
INSERT INTO jobforge_api_keys (id, tenant_id, name, permissions, hash, created_at)
VALUES (%(id)s, %(tenant_id)s, %(name)s, %(permissions)s::jsonb, %(hash)s, %(now)s)

-- name: get_api_key
SELECT * FROM jobforge_api_keys WHERE id = %(id)s

-- name: list_api_keys
SELECT * FROM jobforge_api_keys
WHERE (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
ORDER BY created_at, id

-- name: revoke_api_key
UPDATE jobforge_api_keys SET revoked_at = %(now)s WHERE id = %(id)s AND revoked_at IS NULL
RETURNING *

-- name: touch_api_key
UPDATE jobforge_api_keys SET last_used_at = %(now)s WHERE id = %(id)s

-- name: metrics_jobs
SELECT queue, status, count(*) AS n FROM jobforge_jobs GROUP BY queue, status

-- name: metrics_finished
-- Run times and outcomes of the jobs finished in the metrics window, by type.
SELECT type, status, extract(epoch FROM completed_at - started_at) AS seconds FROM jobforge_jobs
WHERE completed_at >= %(since)s AND started_at IS NOT NULL
  AND status IN ('succeeded', 'partial_success', 'failed', 'cancelled')
LIMIT 100000

-- name: metrics_workflows
SELECT status, count(*) AS n FROM jobforge_workflows GROUP BY status

-- name: metrics_runs
SELECT status, count(*) AS n FROM jobforge_runs GROUP BY status

-- name: metrics_workers
SELECT count(*) AS n FROM jobforge_workers WHERE last_seen_at >= %(since)s
