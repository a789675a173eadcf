-- Unique jobs, cron schedules and their runs, start logs for rate limits.
ALTER TABLE jobforge_jobs ADD COLUMN unique_key text;
-- While a job with this key is not finished, enqueueing the key again returns that job.
CREATE UNIQUE INDEX jobforge_jobs_unique ON jobforge_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'queued', 'waiting', 'running');

CREATE TABLE jobforge_schedules (
    name text PRIMARY KEY,
    cron text NOT NULL,
    timezone text NOT NULL,
    target_kind text NOT NULL,  -- job, group or workflow
    target text NOT NULL,  -- the job type, group name or workflow name
    payload jsonb NOT NULL,  -- job payload, group params, or the whole workflow definition
    depends_on jsonb NOT NULL DEFAULT '[]',  -- schedules whose same-day run this one waits for
    catch_up boolean NOT NULL DEFAULT false,
    paused boolean NOT NULL DEFAULT false,
    source text NOT NULL,  -- code (synced by workers) or cli
    next_run_at timestamptz NOT NULL,
    last_run_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX jobforge_schedules_due ON jobforge_schedules (next_run_at) WHERE NOT paused;

-- One row per fired tick: the primary key is what makes a tick fire exactly once.
CREATE TABLE jobforge_schedule_runs (
    schedule text NOT NULL,
    tick timestamptz NOT NULL,
    job_id uuid,
    workflow_id uuid,
    note text,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (schedule, tick)
);

-- Starts of rate-limited jobs, per limit scope ("type:x", "queue:y"): a sliding window.
CREATE TABLE jobforge_limit_starts (
    scope text NOT NULL,
    started_at timestamptz NOT NULL
);
CREATE INDEX jobforge_limit_starts_scope ON jobforge_limit_starts (scope, started_at);
