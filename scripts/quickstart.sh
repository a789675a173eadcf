#!/usr/bin/env bash
# Command 1 of the README: install jobforge, run the example app's workflows on SQLite, then
# serve the HTTP API with a worker on loopback (no API keys there) until Ctrl-C.
# JOBFORGE_PORT picks the port (default 8000); JOBFORGE_SERVE=0 stops after the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
echo "installing jobforge into .venv..."
.venv/bin/pip install -q -e . 2>&1 | grep -v "^WARNING: Location" || true
export PATH="$PWD/.venv/bin:$PATH"
bash examples/demo.sh
if [ "${JOBFORGE_SERVE:-1}" != 0 ]; then
    echo "== the HTTP API and a worker on the demo database (Ctrl-C stops both)"
    exec jobforge serve --app examples.app:app --db "sqlite:///.jobforge-demo/jobforge.db" \
        --with-worker --no-auth --port "${JOBFORGE_PORT:-8000}" --log-level WARNING
fi
