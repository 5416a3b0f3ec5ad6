#!/usr/bin/env bash
# TFTP benchmark: ftpdlib's `tftpd` against tftp-hpa's `in.tftpd`, side by side, on
# loopback, with the same client (scripts/tftp-bench, a small Rust RFC 1350/7440 client).
#
# Prints MB/s (best of $ROUNDS interleaved rounds, to damp the noise of a shared machine) for:
#   - a 16 MiB download at blksize 512 (no options) and 1468, for both servers;
#   - ftpdlib at windowsize 1 vs 16 (RFC 7440; tftp-hpa has no windowsize);
#   - 50 concurrent 1 MiB downloads: best wall time, and server CPU per run measured with
#     `perf stat -e task-clock` (all threads and forked children; installs linux-perf if
#     missing).
# The concurrency run also shows ftpdlib's --fork mode (one child per session, as tftp-hpa).
#
# Usage: scripts/tftp-bench.sh            (ROUNDS=5 by default; needs root to install
#                                          tftpd-hpa and to let in.tftpd drop to user tftp)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}

if ! [ -x /usr/sbin/in.tftpd ]; then
  echo "installing tftpd-hpa (benchmark peer)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends tftpd-hpa >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends tftpd-hpa >/dev/null; }
fi
command -v perf >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends linux-perf >/dev/null 2>&1 || true
command -v perf >/dev/null 2>&1 || { echo "perf is needed for the CPU figures" >&2; exit 1; }
cargo build --release --quiet --bin tftpd
(cd scripts/tftp-bench && cargo build --release --quiet)
CLIENT=scripts/tftp-bench/target/release/tftp-bench
TFTPD=target/release/tftpd

WORK=$(mktemp -d /tmp/tftp-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/root"
head -c 16777216 /dev/urandom > "$WORK/root/f16m"
head -c 1048576 /dev/urandom > "$WORK/root/f1m"
chmod -R a+rX "$WORK"

free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# tftp-hpa: foreground, secure (chroot) mode, one forked child per transfer.
HPA_PORT=$(free_port)
HPA_USER=tftp; id tftp >/dev/null 2>&1 || HPA_USER=nobody
/usr/sbin/in.tftpd -L -a "127.0.0.1:$HPA_PORT" -s -u "$HPA_USER" "$WORK/root" &
PIDS+=($!); HPA_PID=$!

start_ours() { # $1 = log file, rest = extra flags; prints "pid port"
  local log=$1; shift
  RUST_LOG=warn,ftpdlib::tftp::cli=info "$TFTPD" --root "$WORK/root" --address 127.0.0.1 --port 0 "$@" 2>"$log" &
  local pid=$!
  for _ in $(seq 50); do
    grep -q "serving" "$log" 2>/dev/null && break
    sleep 0.1
  done
  echo "$pid $(grep -o '127.0.0.1:[0-9]*' "$log" | head -1 | cut -d: -f2)"
}
read -r OURS_PID OURS_PORT < <(start_ours "$WORK/ours.log")
PIDS+=("$OURS_PID")
sleep 0.3

mbps() { # port, client args... -> MB/s of one run
  local port=$1; shift
  "$CLIENT" "127.0.0.1:$port" "$@" | sed -n 's/.*MBps=\([0-9.]*\).*/\1/p'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), loopback, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tftp-hpa: $(/usr/sbin/in.tftpd -V 2>&1 | head -1)   rounds: best of $ROUNDS"
echo

# Rounds are interleaved (every configuration once per round), so a burst of load on the
# shared machine hits all of them alike; each keeps its best round.
declare -A R
CONFIGS=("hpa 512" "ours 512" "ours.w16 512" "hpa 1468" "ours 1468" "ours.w16 1468")
for _ in $(seq "$ROUNDS"); do
  for c in "${CONFIGS[@]}"; do
    read -r name bs <<<"$c"
    args=(f16m --blksize "$bs" --expect 16777216)
    case $name in
      hpa) port=$HPA_PORT ;;
      ours) port=$OURS_PORT ;;
      ours.w16) port=$OURS_PORT; args+=(--windowsize 16) ;;
    esac
    r=$(mbps "$port" "${args[@]}")
    R[$name.$bs]=$(awk -v a="${R[$name.$bs]:-0}" -v c="${r:-0}" 'BEGIN{print (c>a)?c:a}')
  done
done
printf '%-30s %10s %10s %12s\n' "16 MiB download (MB/s)" tftp-hpa ftpdlib "ftpdlib/hpa"
for bs in 512 1468; do
  printf '%-30s %10s %10s %12s\n' "blksize $bs, windowsize 1" "${R[hpa.$bs]}" "${R[ours.$bs]}" \
    "$(ratio "${R[ours.$bs]}" "${R[hpa.$bs]}")x"
done
echo
printf '%-30s %10s %10s %12s\n' "ftpdlib windowsize (MB/s)" "ws 1" "ws 16" "ws16/ws1"
for bs in 512 1468; do
  printf '%-30s %10s %10s %12s\n' "blksize $bs" "${R[ours.$bs]}" "${R[ours.w16.$bs]}" "$(ratio "${R[ours.w16.$bs]}" "${R[ours.$bs]}")x"
done
echo

# Concurrency: fresh instances under `perf stat -e task-clock`, which adds up the CPU of every
# thread and forked child (tftp-hpa ignores SIGCHLD, so /proc cutime would miss its children).
# All three run at once and the rounds are interleaved; CPU is the mean per round.
declare -A PORT PERF WALL
NAMES=(hpa ours fork)
for name in "${NAMES[@]}"; do
  port=$(free_port)
  out="$WORK/perf.$name"
  case $name in
    hpa) perf stat -x, -e task-clock -o "$out" -- /usr/sbin/in.tftpd -L -a "127.0.0.1:$port" -s -u "$HPA_USER" "$WORK/root" 2>/dev/null & ;;
    ours) RUST_LOG=warn perf stat -x, -e task-clock -o "$out" -- "$TFTPD" --root "$WORK/root" --address 127.0.0.1 --port "$port" 2>/dev/null & ;;
    fork) RUST_LOG=warn perf stat -x, -e task-clock -o "$out" -- "$TFTPD" --root "$WORK/root" --address 127.0.0.1 --port "$port" --fork 2>/dev/null & ;;
  esac
  PERF[$name]=$!; PIDS+=($!); PORT[$name]=$port; WALL[$name]=999999
done
sleep 0.5
for _ in $(seq "$ROUNDS"); do
  for name in "${NAMES[@]}"; do
    w=$("$CLIENT" "127.0.0.1:${PORT[$name]}" f1m --count 50 --concurrency 50 --expect 1048576 | sed -n 's/.*secs=\([0-9.]*\).*/\1/p')
    WALL[$name]=$(awk -v a="${WALL[$name]}" -v b="${w:-999999}" 'BEGIN{print (b<a)?b:a}')
  done
done
sleep 0.3
printf '%-30s %10s %16s\n' "50 concurrent 1 MiB, bs 512" "wall s" "server CPU s/run"
for name in "${NAMES[@]}"; do
  srv=$(pgrep -P "${PERF[$name]}" | head -1)
  kill "$srv" 2>/dev/null || true
  wait "${PERF[$name]}" 2>/dev/null || true
  ms=$(awk -F, '/task-clock/{print $1}' "$WORK/perf.$name")
  cpu=$(awk -v m="${ms:-0}" -v r="$ROUNDS" 'BEGIN{printf "%.3f", m/1000/r}')
  case $name in hpa) label=tftp-hpa;; ours) label=ftpdlib;; fork) label="ftpdlib --fork";; esac
  printf '%-30s %10s %16s\n' "$label" "${WALL[$name]}" "$cpu"
done
