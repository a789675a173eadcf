#!/usr/bin/env bash
# The example app, driven from the CLI: enqueue jobs, run a real worker, show what happened.
# Needs `jobforge` on PATH (scripts/quickstart.sh sets that up).
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR="${JOBFORGE_DEMO_DIR:-.jobforge-demo}"
rm -rf "$DEMO_DIR" && mkdir -p "$DEMO_DIR"
export JOBFORGE_DATABASE_URL="sqlite:///$DEMO_DIR/jobforge.db"
export JOBFORGE_APP="examples.app:app"

echo "== enqueue the example jobs into $JOBFORGE_DATABASE_URL"
jobforge enqueue extract --payload '{"source": "crm"}'
jobforge enqueue extract --payload '{"source": "billing"}' --priority 10
jobforge enqueue flaky_load --payload '{"table": "orders"}'
jobforge enqueue send_report --payload '{"recipients": ["ops@example.com", "not-an-address"]}'
jobforge enqueue divide --payload '{"a": 1, "b": 0}'
jobforge enqueue noop --payload '{"n": 1}' --queue default

echo "== a DAG workflow from examples/etl.yaml (validated, then written in one transaction)"
WF=$(jobforge workflow create --file examples/etl.yaml)
echo "$WF"

echo "== job groups: the feed group pulls in what it needs from the scoring group"
jobforge group list
jobforge group enqueue feed --dry-run
jobforge group enqueue feed --params '{"feed-build": {"batchSize": 20}}'

echo "== durable workflow runs: one that completes, one whose charge fails and is rolled back"
OK_RUN=$(jobforge run start checkout --input '{"items": ["book"], "card": "4242", "amount": 12}')
BAD_RUN=$(jobforge run start checkout --input '{"items": ["pen"], "card": "0000", "amount": 3}')

echo "== run a worker until no job is left (--burst)"
jobforge worker --burst --concurrency 4 --log-level WARNING

echo "== what happened"
jobforge job list
FAILED=$(jobforge job list --status failed --type divide --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["job_id"])')
echo "== the dead-letter job, in detail"
jobforge job show "$FAILED"

echo "== the workflow: every job, its dependencies and why one was skipped"
jobforge workflow show "$WF"
SKIPPED=$(jobforge job list --workflow "$WF" --status skipped --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["job_id"])')
jobforge job explain "$SKIPPED"
jobforge workflow graph "$WF" --format mermaid

echo "== the durable runs and their recorded steps"
jobforge run show "$OK_RUN"
jobforge run show "$BAD_RUN"

echo "== cron schedules (stored by the worker, fired by every worker exactly once per tick)"
jobforge schedule list
