#!/usr/bin/env bash
# Runs every test tier with ctest, in parallel where tests allow it. Tests tagged [serial]
# (they measure or exhaust the machine) run afterwards, one at a time.
set -euo pipefail
build=${1:-build}
jobs=${CORRAL_TEST_JOBS:-$(( $(nproc) * 2 ))}
cd "$build"
status=0
ctest --output-on-failure --timeout 900 -j "$jobs" -E 'serial' || status=$?
ctest --output-on-failure --timeout 900 -R 'serial' || status=$?
exit $status
