#!/usr/bin/env bash
# Security-group micro benchmark (not a test): CPU cost of the engine's new-flow path
# (conntrack miss, classifier, insert; then the connection's other packets) and of one
# classifier lookup, with 1, 60 and 1,000 rules; native/bench/sg-bench.cc says what it runs.
# Needs only g++ (no root, no network).
#   ./scripts/bench-sg.sh [ROUNDS (5)]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
[ $# -le 1 ] && [[ "${1:-5}" =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/bench-sg.sh [ROUNDS]" >&2; exit 2; }
command -v g++ >/dev/null || { echo "bench-sg: g++ is required" >&2; exit 1; }
out="$(mktemp -d /tmp/nitride-bench-sg.XXXXXX)"
trap 'rm -rf "$out"' EXIT
g++ -O2 -std=c++17 -I"$root/native/src" "$root/native/bench/sg-bench.cc" "$root/native/src/vpc_sg.cc" -o "$out/sg-bench"
echo "load $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
"$out/sg-bench" "${1:-5}"
