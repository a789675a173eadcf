-- Durable workflow runs, their recorded steps, and the events sent to them.
-- A run is driven by the job of the same id: leases, retries and rescue are the job's.
CREATE TABLE jobforge_runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    status TEXT NOT NULL,
    current_step TEXT,
    error TEXT,
    idempotency_key TEXT UNIQUE,
    deadline REAL,
    tenant_id TEXT,
    trace_id TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    updated_at REAL NOT NULL,
    completed_at REAL
);
CREATE INDEX jobforge_runs_created ON jobforge_runs (created_at);
CREATE INDEX jobforge_runs_status ON jobforge_runs (status, created_at);

CREATE TABLE jobforge_steps (
    run_id TEXT NOT NULL REFERENCES jobforge_runs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    seq INTEGER NOT NULL,  -- completion order: compensation runs in reverse
    input TEXT,
    result TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    completed_at REAL,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE jobforge_run_events (
    run_id TEXT NOT NULL REFERENCES jobforge_runs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    data TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, name)
);
