#!/usr/bin/env bash
# The README's test command: install what is needed, build, run every suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec node scripts/run-tests.mjs "$@"
