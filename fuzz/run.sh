#!/usr/bin/env bash
# Build the libFuzzer target over the C core and run it.
#
#   fuzz/run.sh [SECONDS] [libFuzzer options...]   default 600 seconds
#   fuzz/run.sh build                              build only
#   fuzz/run.sh build-replay                       build only the replay driver
#   fuzz/run.sh replay PATH...                     replay cases (no libFuzzer)
#   fuzz/run.sh variants                           write the header variants
#                                                  (fuzz/header_variants.py) and replay them
#
# clang-14 with -fsanitize=fuzzer,address,undefined (Debian: clang-14,
# libclang-rt-14-dev). Seeds: the files the test suite writes
# (tests/corrupt_cases.py), in fuzz/build/seeds; the growing corpus is kept
# in fuzz/build/corpus; crashes land in fuzz/build/artifacts. Each run adds a
# line to fuzz/build/runs.tsv (date, seconds run, executions,
# ooms/timeouts/crashes); the
# totals are printed at the end. Runs at nice 19 on one worker.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=fuzz/build
CC=${CC:-clang-14}
PY=${PYTHON:-/usr/bin/python3}
mkdir -p "$B"/corpus "$B"/artifacts

CFLAGS=(-std=c11 -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=undefined -Wall -Wextra -Wno-unused-parameter)
SRC=(csrc/core/*/*.c fuzz/fuzz_walk.c)
LIBS=(-lwcs -lcfitsio -lcurl -ldeflate -lz -lm -lpthread)

build_replay() {
  "$CC" "${CFLAGS[@]}" -fsanitize=address,undefined "${SRC[@]}" fuzz/replay_main.c \
    -o "$B/replay" "${LIBS[@]}"
}

build() {
  local stamp="$B/.stamp" newer
  newer=$(find csrc/core fuzz -name '*.[ch]' -newer "$stamp" 2>/dev/null | head -1 || true)
  if [[ -f $stamp && -z $newer && -x $B/fuzz_core && -x $B/replay ]]; then return; fi
  "$CC" "${CFLAGS[@]}" -fsanitize=fuzzer,address,undefined "${SRC[@]}" fuzz/fuzz_core.c \
    -o "$B/fuzz_core" "${LIBS[@]}"
  build_replay
  touch "$stamp"
}

seeds() {
  [[ -d $B/seeds ]] && return
  "$PY" -c "import sys; sys.path.insert(0, 'tests'); import corrupt_cases as c; c.write_seeds(sys.argv[1])" "$B/seeds"
}

# ASan: allocations over 1 GiB fail (return NULL) as they would on a small
# machine, so the code's handling of a failed allocation is what is tested.
# cfitsio itself asks for absurd sizes on some damaged table headers (see
# README, Reliability): those must fail cleanly, not abort the run. Our own
# promise (no output larger than the file could hold) is checked by the
# walk itself. Leaks are findings.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:max_allocation_size_mb=1024:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/fuzz/lsan.supp:print_suppressions=0}

# The whole run in one function: bash then reads it all before starting,
# so editing this file during a long run cannot derail it.
main() {
  case "${1:-600}" in
    build) build; exit 0 ;;
    build-replay) build_replay; exit 0 ;;
    replay) shift; build; exec "$B/replay" "$@" ;;
    variants)
      build_replay  # only the replay driver: a fuzzer may be running
      rm -rf "$B/variants"
      "$PY" fuzz/header_variants.py "$B/variants"
      set +e
      "$B/replay" "$B/variants" >"$B/variants.log" 2>&1
      rc=$?
      tail -n 1 "$B/variants.log"
      [[ $rc == 0 ]] || echo "the first failure and its stack: $B/variants.log"
      exit $rc ;;
  esac
  secs=${1:-600}
  shift || true
  build
  seeds
  log="$B/run-$(date -u +%Y%m%dT%H%M%S).log"
  set +e
  local started=$SECONDS
  # -fork=1 with -ignore_*: one child at a time, and the run goes on past a
  # finding (saved in artifacts/) instead of stopping at the first.
  nice -n 19 "$B/fuzz_core" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=1000000 -max_len=200000 -print_final_stats=1 -artifact_prefix="$B/artifacts/" \
    "$@" "$B/corpus" "$B/seeds" tests/crashers >"$log" 2>&1
  rc=$?
  set -e
  # Fork mode prints "#N: cov: ... oom/timeout/crash: a/b/c ..." lines, N
  # being the executions so far; the last line has the totals.
  last=$(grep '^#[0-9]*: cov:' "$log" | tail -1)
  execs=$(sed -n 's/^#\([0-9]*\):.*/\1/p' <<<"$last")
  crashes=$(sed -n 's|.*oom/timeout/crash: *\([0-9/]*\).*|\1|p' <<<"$last")
  printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$((SECONDS - started))" "${execs:-0}" "$crashes" "$log" >>"$B/runs.tsv"
  awk -F'\t' '{e+=$3; s+=$2} END {printf "fuzz: %d runs, %d seconds, %d executions in total\n", NR, s, e}' "$B/runs.tsv"
  tail -5 "$log"
  exit $rc
}

main "$@"
exit
