-- API keys, and the change feed that the HTTP API streams as Server-Sent Events.
--
-- A key is shown once; only its scrypt hash is kept. `id` is the key's public prefix.
CREATE TABLE jobforge_api_keys (
    id text PRIMARY KEY,
    tenant_id text NOT NULL,
    name text,
    permissions jsonb NOT NULL,
    hash text NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    last_used_at timestamptz
);

-- Every status (and progress) change of a job, workflow or durable run, written by the
-- statement triggers below in the transaction that made it; new jobs outside workflows are
-- written by the insert itself, as on SQLite.
--
-- Transactions commit out of id order, so a reader cannot resume with `id > last seen`: a
-- slower transaction may commit a lower id later. Each event carries its transaction id
-- instead, and a reader takes only events of transactions older than every one still in
-- progress (`pg_snapshot_xmin`), in (txid, id) order: nothing can appear behind its cursor.
CREATE TABLE jobforge_events (
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    id bigint GENERATED ALWAYS AS IDENTITY,
    kind text NOT NULL,
    object_id uuid NOT NULL,
    workflow_id uuid,
    tenant_id text,
    status text NOT NULL,
    progress integer,
    at timestamptz NOT NULL,
    PRIMARY KEY (txid, id)
);

-- One notification per transaction: PostgreSQL folds identical ones. Jobs change in bulk on
-- hot paths, so their trigger is per row, filtered in C by its WHEN clause (a statement
-- trigger with transition tables copies every updated row, heartbeats included: it made a
-- 2,000-job fan-out 70 % slower); workflows and runs change rarely.
CREATE FUNCTION jobforge_job_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobforge_events (kind, object_id, workflow_id, tenant_id, status, progress, at)
    VALUES ('job', NEW.id, NEW.workflow_id, NEW.tenant_id, NEW.status, NEW.progress, NEW.updated_at);
    PERFORM pg_notify('jobforge_events', '');
    RETURN NULL;
END $$;

CREATE FUNCTION jobforge_workflow_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO jobforge_events (kind, object_id, workflow_id, tenant_id, status, at)
        SELECT 'workflow', n.id, n.id, n.tenant_id, n.status, n.updated_at FROM new_rows n;
    ELSE
        INSERT INTO jobforge_events (kind, object_id, workflow_id, tenant_id, status, at)
        SELECT 'workflow', n.id, n.id, n.tenant_id, n.status, n.updated_at
        FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE n.status <> o.status;
    END IF;
    IF FOUND THEN
        PERFORM pg_notify('jobforge_events', '');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION jobforge_run_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO jobforge_events (kind, object_id, tenant_id, status, at)
        SELECT 'run', n.id, n.tenant_id, n.status, n.updated_at FROM new_rows n;
    ELSE
        INSERT INTO jobforge_events (kind, object_id, tenant_id, status, at)
        SELECT 'run', n.id, n.tenant_id, n.status, n.updated_at
        FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE n.status <> o.status;
    END IF;
    IF FOUND THEN
        PERFORM pg_notify('jobforge_events', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER jobforge_jobs_changed AFTER UPDATE OF status, progress ON jobforge_jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.progress IS DISTINCT FROM NEW.progress)
    EXECUTE FUNCTION jobforge_job_events();
CREATE TRIGGER jobforge_workflows_inserted AFTER INSERT ON jobforge_workflows
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobforge_workflow_events();
CREATE TRIGGER jobforge_workflows_changed AFTER UPDATE ON jobforge_workflows
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobforge_workflow_events();
CREATE TRIGGER jobforge_runs_inserted AFTER INSERT ON jobforge_runs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobforge_run_events();
CREATE TRIGGER jobforge_runs_changed AFTER UPDATE ON jobforge_runs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobforge_run_events();

-- Pruning by age: a block range index costs next to nothing to keep up.
CREATE INDEX jobforge_events_at ON jobforge_events USING brin (at);

-- Unique keys are per tenant: another tenant's key neither blocks nor reveals a job.
DROP INDEX jobforge_jobs_unique;
CREATE UNIQUE INDEX jobforge_jobs_unique ON jobforge_jobs (coalesce(tenant_id, ''), unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'queued', 'waiting', 'running');
-- Finding the holders of some keys, whatever their tenant, in one probe per key.
CREATE INDEX jobforge_jobs_unique_key ON jobforge_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'queued', 'waiting', 'running');
