-- Times are unix epoch seconds (REAL): cheap to compare and index.
CREATE TABLE jobforge_jobs (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    scheduled_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    timeout REAL,
    progress INTEGER NOT NULL DEFAULT 0,
    progress_message TEXT,
    result TEXT,
    result_url TEXT,
    errors TEXT NOT NULL DEFAULT '[]',
    tenant_id TEXT,
    trace_id TEXT,
    correlation_id TEXT,
    retry_backoff REAL NOT NULL,
    retry_backoff_max REAL NOT NULL,
    worker_id TEXT,
    lease_token TEXT,
    lease_expires_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    completed_at REAL
);

-- The claim walks this index in run order and stops after LIMIT rows.
CREATE INDEX jobforge_jobs_ready ON jobforge_jobs (priority DESC, scheduled_at, id)
    WHERE status IN ('queued', 'scheduled');
CREATE INDEX jobforge_jobs_due ON jobforge_jobs (scheduled_at)
    WHERE status IN ('queued', 'scheduled');
CREATE INDEX jobforge_jobs_leases ON jobforge_jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobforge_jobs_worker ON jobforge_jobs (worker_id) WHERE status = 'running';
CREATE INDEX jobforge_jobs_status_created ON jobforge_jobs (status, created_at);
CREATE INDEX jobforge_jobs_created ON jobforge_jobs (created_at);

CREATE TABLE jobforge_workers (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    queues TEXT,
    concurrency INTEGER NOT NULL,
    started_at REAL NOT NULL,
    last_seen_at REAL NOT NULL
);
