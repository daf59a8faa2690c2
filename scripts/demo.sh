#!/usr/bin/env bash
# The README's demo command: install what is needed, build, bring up a 2-VM
# simulated VNet with real pods, print the connectivity matrix, tear down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec node dist/lab/demo.js "$@"
