#!/usr/bin/env bash
# The README's test command: install what is needed, build, run every suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# Types and typescript-eslint (type-checked recommended rules) first: a lint
# finding fails the run like a failing test.
echo "==> lint"
npm run lint --silent
exec node scripts/run-tests.mjs "$@"
