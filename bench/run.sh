#!/bin/sh
# `make bench`: the benchmark of docs/benchmarks.md. Prints figures beside
# their targets (it never fails on a missed target) and records them in
# docs/benchmarks.md. Knobs (environment): BENCH_FULL=0 skips the
# 1,000,000-item scenarios; BENCH_N, BENCH_BIG_N, BENCH_REPEAT,
# BENCH_RESTARTS, BENCH_PROFILE=1 (adds a perf profile), BENCH_DOC=0 (leave
# the doc alone), BENCH_DIR (where the stores go; must be the real disk),
# BENCH_PIPE=0|only and BENCH_PIPE_N, BENCH_PIPE_RESUME_N (the pipeline scenarios).
# Then the daemon benchmark (bench/serve_bench.py, its BENCH_SERVE_* knobs
# are listed there): BENCH_SERVE=0 skips it, BENCH_SERVE=only runs only it.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CC=${CC:-cc}
for b in "$BUILD/longhaul" "$BUILD/longhaul-mockllm"; do
	if [ ! -x "$b" ]; then
		echo "bench: $b is missing: run make all first" >&2
		exit 1
	fi
done
# The rusage helper (see bench/spawn.c).
if [ ! -x "$BUILD/bench-spawn" ] || [ bench/spawn.c -nt "$BUILD/bench-spawn" ]; then
	$CC -std=gnu11 -O2 -Wall -Wextra -Werror -o "$BUILD/bench-spawn" bench/spawn.c
fi
BENCH_SERVE=${BENCH_SERVE:-1}
if [ "$BENCH_SERVE" != only ]; then
	LONGHAUL_BUILD=$(pwd)/$BUILD /usr/bin/python3 bench/bench.py "$@"
fi
if [ "$BENCH_SERVE" != 0 ]; then
	LONGHAUL_BUILD=$(pwd)/$BUILD exec /usr/bin/python3 bench/serve_bench.py
fi
