-- Unique jobs, cron schedules and their runs, start logs for rate limits.
ALTER TABLE jobforge_jobs ADD COLUMN unique_key TEXT;
-- While a job with this key is not finished, enqueueing the key again returns that job.
CREATE UNIQUE INDEX jobforge_jobs_unique ON jobforge_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'queued', 'waiting', 'running');

CREATE TABLE jobforge_schedules (
    name TEXT PRIMARY KEY,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    target_kind TEXT NOT NULL,  -- job, group or workflow
    target TEXT NOT NULL,  -- the job type, group name or workflow name
    payload TEXT NOT NULL,  -- job payload, group params, or the whole workflow definition
    depends_on TEXT NOT NULL DEFAULT '[]',  -- schedules whose same-day run this one waits for
    catch_up INTEGER NOT NULL DEFAULT 0,
    paused INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL,  -- code (synced by workers) or cli
    next_run_at REAL NOT NULL,
    last_run_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX jobforge_schedules_due ON jobforge_schedules (next_run_at) WHERE NOT paused;

-- One row per fired tick: the primary key is what makes a tick fire exactly once.
CREATE TABLE jobforge_schedule_runs (
    schedule TEXT NOT NULL,
    tick REAL NOT NULL,
    job_id TEXT,
    workflow_id TEXT,
    note TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (schedule, tick)
);

-- Starts of rate-limited jobs, per limit scope ("type:x", "queue:y"): a sliding window.
CREATE TABLE jobforge_limit_starts (
    scope TEXT NOT NULL,
    started_at REAL NOT NULL
);
CREATE INDEX jobforge_limit_starts_scope ON jobforge_limit_starts (scope, started_at);
