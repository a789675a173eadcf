-- The index of active workflow jobs, without the jobs of no workflow. Its only readers
-- look up one workflow (`workflow_id = ...`, which implies IS NOT NULL, so they still use
-- it), but every plain job used to get an entry with a NULL key: a sixth of the cost of
-- inserting one.
DROP INDEX jobforge_jobs_workflow_active;
CREATE INDEX jobforge_jobs_workflow_active ON jobforge_jobs (workflow_id)
    WHERE workflow_id IS NOT NULL AND status IN ('scheduled', 'queued', 'waiting', 'running');
