#!/usr/bin/env bash
# Runs every cargo-fuzz target of scripts/fuzz for SECONDS each (default 60), one process at
# a time, and prints per target the executions and the crashes found (libFuzzer stops at the
# first; its input is kept in scripts/fuzz/artifacts/TARGET/).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain (libFuzzer's sanitizer coverage); installs cargo-fuzz when
# missing. Corpora grow in scripts/fuzz/corpus/TARGET (not committed), seeded from
# scripts/fuzz/seeds/TARGET. Exit status 1 when any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
case "$secs" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
dir=scripts/fuzz

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir "$dir")
fi

# Release build with debug assertions and overflow checks (cargo-fuzz's default).
cargo +nightly fuzz build --fuzz-dir "$dir"

logs=$(mktemp -d)
trap 'rm -rf "$logs" /tmp/ftpdlib-fuzz-*' EXIT
failed=0
printf '%-14s %8s %14s %10s %8s %8s\n' target seconds executions exec/s corpus crashes
for t in "${targets[@]}"; do
  corpus="$dir/corpus/$t"
  arts="$dir/artifacts/$t"
  mkdir -p "$corpus" "$arts"
  if [ -d "$dir/seeds/$t" ]; then
    cp -n "$dir/seeds/$t"/* "$corpus"/ 2>/dev/null || true
  fi
  before=$(find "$arts" -type f | wc -l)
  log="$logs/$t.log"
  start=$(date +%s)
  # One process, no forks or jobs: the machine is shared.
  rc=0
  cargo +nightly fuzz run --fuzz-dir "$dir" "$t" "$corpus" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$arts/" >"$log" 2>&1 || rc=$?
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  crashes=$(( $(find "$arts" -type f | wc -l) - before ))
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes=1 # died without an artifact (e.g. the build or the jail setup failed)
  fi
  size=$(find "$corpus" -type f | wc -l)
  printf '%-14s %8s %14s %10s %8s %8s\n' "$t" "$took" "${execs:-?}" "${rate:-?}" "$size" "$crashes"
  if [ "$crashes" -ne 0 ]; then
    failed=1
    echo "--- $t: the panic and the input kept (libFuzzer's output)" >&2
    grep -A4 -m1 'panicked' "$log" >&2 || tail -n 40 "$log" >&2
    grep -A2 -m1 'Failing input' "$log" >&2 || true
  fi
done
exit "$failed"
