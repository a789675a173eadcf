CREATE TABLE jobforge_jobs (
    id uuid PRIMARY KEY,
    type text NOT NULL,
    queue text NOT NULL,
    status text NOT NULL,
    payload jsonb NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    scheduled_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    timeout double precision,
    progress integer NOT NULL DEFAULT 0,
    progress_message text,
    result jsonb,
    result_url text,
    errors jsonb NOT NULL DEFAULT '[]',
    tenant_id text,
    trace_id text,
    correlation_id text,
    retry_backoff double precision NOT NULL,
    retry_backoff_max double precision NOT NULL,
    worker_id text,
    lease_token text,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    started_at timestamptz,
    completed_at timestamptz
);

-- The claim walks this index in run order and stops after LIMIT rows (SKIP LOCKED).
CREATE INDEX jobforge_jobs_ready ON jobforge_jobs (priority DESC, scheduled_at, id)
    WHERE status IN ('queued', 'scheduled');
CREATE INDEX jobforge_jobs_due ON jobforge_jobs (scheduled_at)
    WHERE status IN ('queued', 'scheduled');
CREATE INDEX jobforge_jobs_leases ON jobforge_jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobforge_jobs_worker ON jobforge_jobs (worker_id) WHERE status = 'running';
CREATE INDEX jobforge_jobs_status_created ON jobforge_jobs (status, created_at);
CREATE INDEX jobforge_jobs_created ON jobforge_jobs (created_at);

CREATE TABLE jobforge_workers (
    id text PRIMARY KEY,
    hostname text NOT NULL,
    pid integer NOT NULL,
    queues text,
    concurrency integer NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);
