#!/usr/bin/env bash
# Command 1 of the README: install jobforge and run the example app's jobs on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
echo "installing jobforge into .venv..."
.venv/bin/pip install -q -e . 2>&1 | grep -v "^WARNING: Location" || true
PATH="$PWD/.venv/bin:$PATH" bash examples/demo.sh
