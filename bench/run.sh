#!/bin/sh
# corral's benchmark: bench/run.sh BUILD_DIR (BENCH_SMOKE=1 for the smoke run).
# BUILD_DIR must hold corrald, corral-run and corral-bench-load. Run as root (corrald manages
# cgroups). Prints one table; the figures go to bench/results/latest.json.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: bench/run.sh BUILD_DIR}" && pwd)
for binary in corrald corral-run corral-bench-load; do
  if [ ! -x "$build/$binary" ]; then
    echo "bench: $build/$binary is missing; build it first" >&2
    exit 2
  fi
done
smoke=""
if [ "${BENCH_SMOKE:-0}" = "1" ]; then smoke="--smoke"; fi
cd "$here"
exec /usr/bin/python3 -m corral_bench --build "$build" $smoke
