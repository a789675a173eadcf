-- Durable workflow runs, their recorded steps, and the events sent to them.
-- A run is driven by the job of the same id: leases, retries and rescue are the job's.
CREATE TABLE jobforge_runs (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    version integer NOT NULL,
    input jsonb NOT NULL,
    output jsonb,
    status text NOT NULL,
    current_step text,
    error jsonb,
    idempotency_key text UNIQUE,
    deadline timestamptz,
    tenant_id text,
    trace_id text,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    updated_at timestamptz NOT NULL,
    completed_at timestamptz
);
CREATE INDEX jobforge_runs_created ON jobforge_runs (created_at);
CREATE INDEX jobforge_runs_status ON jobforge_runs (status, created_at);

CREATE TABLE jobforge_steps (
    run_id uuid NOT NULL REFERENCES jobforge_runs (id) ON DELETE CASCADE,
    name text NOT NULL,
    status text NOT NULL,
    seq integer NOT NULL,  -- completion order: compensation runs in reverse
    input jsonb,
    result jsonb,
    error jsonb,
    attempts integer NOT NULL DEFAULT 0,
    started_at timestamptz,
    completed_at timestamptz,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE jobforge_run_events (
    run_id uuid NOT NULL REFERENCES jobforge_runs (id) ON DELETE CASCADE,
    name text NOT NULL,
    data jsonb,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, name)
);
