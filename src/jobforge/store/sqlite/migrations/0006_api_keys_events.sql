-- API keys, and the change feed that the HTTP API streams as Server-Sent Events.
--
-- A key is shown once; only its scrypt hash is kept. `id` is the key's public prefix.
CREATE TABLE jobforge_api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name TEXT,
    permissions TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL,
    last_used_at REAL
);

-- Every status (and progress) change of a job, workflow or durable run, written by the
-- triggers below in the transaction that made it; new jobs outside workflows are written by
-- the insert itself (an INSERT trigger, even an empty one, doubles the cost of bulk inserts
-- here). SQLite commits one writer at a time, so ids are in commit order and a reader
-- resumes with `id > last seen`. Pruning always keeps the newest event, so ids are never
-- reused and an old cursor never skips a new event.
CREATE TABLE jobforge_events (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    workflow_id TEXT,
    tenant_id TEXT,
    status TEXT NOT NULL,
    progress INTEGER,
    at REAL NOT NULL
);

CREATE TRIGGER jobforge_jobs_changed AFTER UPDATE OF status, progress ON jobforge_jobs
WHEN NEW.status IS NOT OLD.status OR NEW.progress IS NOT OLD.progress BEGIN
    INSERT INTO jobforge_events (kind, object_id, workflow_id, tenant_id, status, progress, at)
    VALUES ('job', NEW.id, NEW.workflow_id, NEW.tenant_id, NEW.status, NEW.progress, NEW.updated_at);
END;

CREATE TRIGGER jobforge_workflows_inserted AFTER INSERT ON jobforge_workflows BEGIN
    INSERT INTO jobforge_events (kind, object_id, workflow_id, tenant_id, status, at)
    VALUES ('workflow', NEW.id, NEW.id, NEW.tenant_id, NEW.status, NEW.updated_at);
END;

CREATE TRIGGER jobforge_workflows_changed AFTER UPDATE OF status ON jobforge_workflows
WHEN NEW.status IS NOT OLD.status BEGIN
    INSERT INTO jobforge_events (kind, object_id, workflow_id, tenant_id, status, at)
    VALUES ('workflow', NEW.id, NEW.id, NEW.tenant_id, NEW.status, NEW.updated_at);
END;

CREATE TRIGGER jobforge_runs_inserted AFTER INSERT ON jobforge_runs BEGIN
    INSERT INTO jobforge_events (kind, object_id, tenant_id, status, at)
    VALUES ('run', NEW.id, NEW.tenant_id, NEW.status, NEW.updated_at);
END;

CREATE TRIGGER jobforge_runs_changed AFTER UPDATE OF status ON jobforge_runs
WHEN NEW.status IS NOT OLD.status BEGIN
    INSERT INTO jobforge_events (kind, object_id, tenant_id, status, at)
    VALUES ('run', NEW.id, NEW.tenant_id, NEW.status, NEW.updated_at);
END;

-- Unique keys are per tenant: another tenant's key neither blocks nor reveals a job.
DROP INDEX jobforge_jobs_unique;
CREATE UNIQUE INDEX jobforge_jobs_unique ON jobforge_jobs (coalesce(tenant_id, ''), unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'queued', 'waiting', 'running');
-- Finding the holders of some keys, whatever their tenant, in one probe per key.
CREATE INDEX jobforge_jobs_unique_key ON jobforge_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'queued', 'waiting', 'running');
