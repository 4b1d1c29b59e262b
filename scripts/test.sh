#!/usr/bin/env bash
# The full test suite, on a fresh Debian 12 host as root: installs what is missing,
# builds, then runs vitest (which ends with its summary and a plain "tests: N passed, N failed" line).
# Extra arguments go to vitest, e.g. `./scripts/test.sh test/nbd`.
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"
bootstrap "${NBD_CLIENT_PACKAGES[@]}" "${VPC_PACKAGES[@]}" "${VM_PACKAGES[@]}" "${SYSTEMD_PACKAGES[@]}" "${CEPH_PACKAGES[@]}" "${ETCD_PACKAGES[@]}"
exec npx --no-install vitest run "$@"
