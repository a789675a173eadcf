-- Dependencies between jobs, and DAG workflows.
ALTER TABLE jobforge_jobs ADD COLUMN workflow_id TEXT;
ALTER TABLE jobforge_jobs ADD COLUMN name TEXT;
ALTER TABLE jobforge_jobs ADD COLUMN dependency_status TEXT NOT NULL DEFAULT 'none';
-- Edges not yet resolved: the job is released when this reaches 0 (no scan of the parents).
ALTER TABLE jobforge_jobs ADD COLUMN pending_parents INTEGER NOT NULL DEFAULT 0;
-- Parents with children (any, parallel): settling a job without children costs no query.
ALTER TABLE jobforge_jobs ADD COLUMN has_children INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobforge_jobs ADD COLUMN has_parallel_children INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobforge_jobs ADD COLUMN dependency_deadline REAL;
ALTER TABLE jobforge_jobs ADD COLUMN optional INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobforge_jobs ADD COLUMN reason TEXT;
ALTER TABLE jobforge_jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
-- Longest chain of parents above this job, for the depth limit.
ALTER TABLE jobforge_jobs ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;

CREATE INDEX jobforge_jobs_workflow ON jobforge_jobs (workflow_id, name) WHERE workflow_id IS NOT NULL;
-- Is anything in this workflow still active? One index probe, whatever the workflow's size.
CREATE INDEX jobforge_jobs_workflow_active ON jobforge_jobs (workflow_id)
    WHERE status IN ('scheduled', 'queued', 'waiting', 'running');
CREATE INDEX jobforge_jobs_dependency_deadline ON jobforge_jobs (dependency_deadline)
    WHERE status = 'waiting';

CREATE TABLE jobforge_edges (
    id TEXT PRIMARY KEY,
    parent_id TEXT NOT NULL REFERENCES jobforge_jobs (id) ON DELETE CASCADE,
    child_id TEXT NOT NULL REFERENCES jobforge_jobs (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    condition TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    workflow_id TEXT,
    created_at REAL NOT NULL,
    resolved_at REAL,
    resolved_by TEXT,
    UNIQUE (parent_id, child_id)
);
CREATE INDEX jobforge_edges_child ON jobforge_edges (child_id);
CREATE INDEX jobforge_edges_pending ON jobforge_edges (parent_id) WHERE status = 'pending';

CREATE TABLE jobforge_workflows (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    status TEXT NOT NULL,
    failure_policy TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    timeout REAL,
    deadline REAL,
    metadata TEXT NOT NULL DEFAULT '{}',
    tenant_id TEXT,
    trace_id TEXT,
    correlation_id TEXT,
    cancel_reason TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    completed_at REAL
);
CREATE INDEX jobforge_workflows_created ON jobforge_workflows (created_at);
CREATE INDEX jobforge_workflows_active ON jobforge_workflows (deadline)
    WHERE status IN ('pending', 'running', 'paused');
