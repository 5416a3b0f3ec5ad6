#!/usr/bin/env bash
# Soak test: SESSIONS (default 1000) concurrent sessions doing mixed operations (login, LIST,
# RETR, STOR + DELE, ABOR mid-download, navigation, abrupt closes mid-transfer) for MINUTES
# (default 10) against the release binary under each concurrency model, one model at a time.
# Reports per model the operations done, replies by code, unexpected replies, 421s, hung
# connections and I/O errors, and the server's descriptors, threads, processes and memory
# before, during and after the load (scripts/ftpbench --soak). Loopback only; every loop is
# bounded in time. Exit status 1 when any model failed.
#
#   scripts/soak.sh [MINUTES] [MODEL...]     models: pool multi-thread multi-proc pre-fork
#   SESSIONS=200 scripts/soak.sh 1 pool      a short run
set -euo pipefail
cd "$(dirname "$0")/.."

minutes="${1:-10}"
shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(pool multi-thread multi-proc pre-fork)
sessions="${SESSIONS:-1000}"
secs=$(awk -v m="$minutes" 'BEGIN { s = m * 60; if (s <= 0) exit 1; print s }') || {
  echo "usage: scripts/soak.sh [MINUTES] [MODEL...]" >&2
  exit 2
}

# Each session holds a control and a data socket on both sides: raise the descriptor limit
# (inherited by the server and the load generator).
want=$((sessions * 4 + 1024))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$want" ]; then
  ulimit -Hn "$want" 2>/dev/null || echo "soak: cannot raise the hard fd limit to $want" >&2
fi
ulimit -n "$(ulimit -Hn)"

cargo build --release --bin ftpdlib
cargo build --release --manifest-path scripts/ftpbench/Cargo.toml
bench=scripts/ftpbench/target/release/ftpbench

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
root="$work/root"
mkdir -p "$root/soak-list"
# Uploads spread over 32 directories (ftpbench's UPLOAD_DIRS): with all sessions creating and
# deleting in one, the kernel's per-directory lock is what gets measured.
for i in $(seq 0 31); do mkdir -p "$root/soak-up/$i"; done
head -c $((64 << 10)) /dev/urandom >"$root/soak-small.bin"
# Larger than loopback's socket buffers, so an ABOR after the first bytes finds it running.
head -c $((32 << 20)) /dev/urandom >"$root/soak-big.bin"
for i in $(seq 1 100); do echo "$i" >"$root/soak-list/file-$i.txt"; done

failed=0
summary="$work/summary"
for model in "${models[@]}"; do
  log="$work/$model.log"
  target/release/ftpdlib -i 127.0.0.1 -p 0 -d "$root" -u soak -P soak -w \
    --max-cons 0 --concurrency "$model" 2>"$log" &
  server=$!
  port=""
  for _ in $(seq 1 100); do
    port=$(sed -n 's/.*starting FTP server on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$log" | head -n1)
    [ -n "$port" ] && break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "soak: the $model server did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 1 # pre-fork: let the workers start before the first sample
  echo "=== $model: $sessions sessions for $minutes min (server pid $server, port $port)"
  out="$work/$model.out"
  rc=0
  "$bench" -H 127.0.0.1 -P "$port" -u soak -p soak -n "$sessions" -t 60 -k "$server" \
    --soak "$secs" | tee "$out" || rc=$?
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=
  panics=$(grep -c 'panicked' "$log" || true)
  errors=$(grep -c ' ERROR ' "$log" || true)
  echo "server log: $(wc -l <"$log") lines, $errors ERROR, $panics panics"
  if [ "$rc" -ne 0 ] || [ "$panics" -ne 0 ]; then
    failed=1
    keep="${TMPDIR:-/tmp}/ftpdlib-soak-$model.log"
    cp "$log" "$keep"
    echo "--- $model failed: the server's log is kept in $keep"
    echo "--- $model: the server's ERROR and panic lines (first 20)"
    grep -E ' ERROR |panicked' "$log" | head -n 20 || true
  fi
  {
    echo "== $model (exit $rc, server log: $errors ERROR, $panics panics)"
    grep -E '^(before|during|after|ops|replies|unexpected)' "$out" || true
  } >>"$summary"
  rm -f "$root"/soak-up/*/*
done
echo
echo "=== summary"
cat "$summary"
exit "$failed"
