-- Dependencies between jobs, and DAG workflows.
ALTER TABLE jobforge_jobs
    ADD COLUMN workflow_id uuid,
    ADD COLUMN name text,
    ADD COLUMN dependency_status text NOT NULL DEFAULT 'none',
    -- Edges not yet resolved: the job is released when this reaches 0 (no scan of the parents).
    ADD COLUMN pending_parents integer NOT NULL DEFAULT 0,
    -- Parents with children (any, parallel): settling a job without children costs no query.
    ADD COLUMN has_children boolean NOT NULL DEFAULT false,
    ADD COLUMN has_parallel_children boolean NOT NULL DEFAULT false,
    ADD COLUMN dependency_deadline timestamptz,
    ADD COLUMN optional boolean NOT NULL DEFAULT false,
    ADD COLUMN reason text,
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
    -- Longest chain of parents above this job, for the depth limit.
    ADD COLUMN depth integer NOT NULL DEFAULT 0;

CREATE INDEX jobforge_jobs_workflow ON jobforge_jobs (workflow_id, name) WHERE workflow_id IS NOT NULL;
-- Is anything in this workflow still active? One index probe, whatever the workflow's size.
CREATE INDEX jobforge_jobs_workflow_active ON jobforge_jobs (workflow_id)
    WHERE status IN ('scheduled', 'queued', 'waiting', 'running');
CREATE INDEX jobforge_jobs_dependency_deadline ON jobforge_jobs (dependency_deadline)
    WHERE status = 'waiting';

CREATE TABLE jobforge_edges (
    id uuid PRIMARY KEY,
    parent_id uuid NOT NULL REFERENCES jobforge_jobs (id) ON DELETE CASCADE,
    child_id uuid NOT NULL REFERENCES jobforge_jobs (id) ON DELETE CASCADE,
    kind text NOT NULL,
    condition text,
    status text NOT NULL DEFAULT 'pending',
    workflow_id uuid,
    created_at timestamptz NOT NULL,
    resolved_at timestamptz,
    resolved_by text,
    UNIQUE (parent_id, child_id)
);
CREATE INDEX jobforge_edges_child ON jobforge_edges (child_id);
CREATE INDEX jobforge_edges_pending ON jobforge_edges (parent_id) WHERE status = 'pending';

CREATE TABLE jobforge_workflows (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    description text,
    status text NOT NULL,
    failure_policy text NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    timeout double precision,
    deadline timestamptz,
    metadata jsonb NOT NULL DEFAULT '{}',
    tenant_id text,
    trace_id text,
    correlation_id text,
    cancel_reason text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    completed_at timestamptz
);
CREATE INDEX jobforge_workflows_created ON jobforge_workflows (created_at);
CREATE INDEX jobforge_workflows_active ON jobforge_workflows (deadline)
    WHERE status IN ('pending', 'running', 'paused');
