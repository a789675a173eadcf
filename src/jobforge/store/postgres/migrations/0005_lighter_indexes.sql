-- Fewer index entries per inserted job and edge; every reader keeps an index.
--
-- Two partial indexes lose the rows whose key is NULL. Their readers compare the key
-- (`workflow_id = ...`, `dependency_deadline < ...`), which implies IS NOT NULL, so both
-- SQLite and PostgreSQL still use them; but every plain job had an entry in the first and
-- every waiting job without a deadline one in the second.
DROP INDEX jobforge_jobs_workflow_active;
CREATE INDEX jobforge_jobs_workflow_active ON jobforge_jobs (workflow_id)
    WHERE workflow_id IS NOT NULL AND status IN ('scheduled', 'queued', 'waiting', 'running');
DROP INDEX jobforge_jobs_dependency_deadline;
CREATE INDEX jobforge_jobs_dependency_deadline ON jobforge_jobs (dependency_deadline)
    WHERE dependency_deadline IS NOT NULL AND status = 'waiting';
-- The pending edges of a parent are found through the UNIQUE (parent_id, child_id) index,
-- which reads the parent's edges (its children) whatever their status: no second index
-- on parent_id to write for every edge.
DROP INDEX jobforge_edges_pending;
