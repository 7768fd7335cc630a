#!/usr/bin/env bash
# Set up (or reuse) .venv, then run the whole test suite.
#   bash tools/run_tests.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
# pytest exits 5 when it collected no test: that is a failure here too.
exec "$ROOT/.venv/bin/python" -m pytest tests -q -rs "$@"
