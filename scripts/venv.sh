# Sourced by the other scripts: make ./.venv with Python >= 3.11, installing python3-venv
# on Debian when it is missing (a fresh Debian has python3 but not always its venv module).
set -euo pipefail
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv >/dev/null 2>&1; then
        rm -rf .venv
        if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
            echo "installing python3-venv with apt-get..."
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            "$PYTHON" -m venv .venv
        else
            echo "error: '$PYTHON -m venv' failed; install it first: sudo apt-get install python3-venv" >&2
            exit 1
        fi
    fi
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
