#!/usr/bin/env bash
# CLI start-up benchmark (not a test): how long each client verb of `nitride` takes against a
# real daemon and KMS (in a scratch state directory), next to `node -e 0` in the same run;
# the goal is every verb within 2x node's own start. Medians of --runs (20). Prints a table,
# writes bench-results/cli-<timestamp>.json. ~1 minute.
#   ./scripts/bench-cli.sh [--runs N] [--compare-cli OTHER/dist/cli/main.js] [--out FILE.json] [--keep]
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"
bench_options "$NITRIDE_ROOT/scripts/bench/cli.mjs" "$@"
bootstrap
exec node scripts/bench/cli.mjs "$@"
