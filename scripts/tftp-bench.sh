#!/usr/bin/env bash
# TFTP benchmark: ftpdlib's `tftpd` against tftp-hpa's `in.tftpd` and atftpd, side by side on
# loopback, with one client (scripts/tftp-bench, a small Rust RFC 1350/7440 client with a
# default receive buffer that drains windows with recvmmsg).
#
# Prints, each figure the median of 3 interleaved rounds (MB/s = 10^6 bytes/s; server CPU per
# download measured with `perf stat -e task-clock` over a fresh instance of each server, all
# its threads and forked children included):
#   1. single stream, 32 MB, blksize 512 (no options) / 1468 / 65464: all three servers;
#   2. windowsize 16 at blksize 512 / 1468 / 65464: ftpdlib and atftpd (tftp-hpa has no
#      windowsize);
#   3. 20 MB at blksize 65464, windowsize 16, 20 times in a row: completions and MB/s;
#   4. 50 concurrent 1 MiB downloads (blksize 512): wall time and server CPU per run, with
#      ftpdlib --fork as well;
#   5. the loss table: every pattern of tests/tftp_common/relay.rs x every setting, time and
#      DATA packets per block, for the three servers (`cargo test --release --test
#      tftp_loss -- --ignored loss_table`).
#
# The peers come from their Debian packages, unpacked (apt-get download, dpkg-deb -x) into
# ${TFTP_PEERS:-/tmp/tftp-peers} rather than installed: tftpd-hpa and atftpd conflict with each
# other, and an install would start a daemon on port 69. Every server runs in the foreground
# on 127.0.0.1 and a free port, started and stopped by this script (by pid).
#
# Usage: scripts/tftp-bench.sh [--no-loss]      (root: fetching peers, tftp-hpa's -u)
# ROUNDS=N in the environment takes medians of N rounds instead of 3: on a machine shared
# with other jobs, one slow round in three moves a lock-step median a long way.
set -euo pipefail
cd "$(dirname "$0")/.."
LOSS=1
[ "${1:-}" = "--no-loss" ] && LOSS=0
ROUNDS=${ROUNDS:-3}
PEERS=${TFTP_PEERS:-/tmp/tftp-peers}
log() { echo "tftp-bench: $*" >&2; }

# peer PKG PROG: prints the path of PROG from Debian package PKG, unpacked into $PEERS/PKG.
peer() {
    local pkg=$1 prog=$2 dest=$PEERS/$1
    if [ ! -x "$dest$prog" ]; then
        [ "$(id -u)" = 0 ] || { log "not root: cannot fetch $pkg"; return 1; }
        log "fetching $pkg into $dest (apt-get download, dpkg-deb -x)"
        mkdir -p "$PEERS/deb"
        (cd "$PEERS/deb" && { apt-get download -q "$pkg" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 && apt-get download -q "$pkg" >/dev/null 2>&1; }; }) ||
            { log "apt-get download $pkg failed"; return 1; }
        local debs=("$PEERS/deb/${pkg}_"*.deb)
        rm -rf "$dest" && mkdir -p "$dest" && dpkg-deb -x "${debs[0]}" "$dest"
        dpkg-deb -f "${debs[0]}" Version >"$dest.version"
    fi
    [ -s "$dest.version" ] || dpkg-deb -f "$PEERS/deb/${pkg}_"*.deb Version >"$dest.version" 2>/dev/null || true
    if ldd "$dest$prog" | grep -q 'not found'; then
        log "$pkg: installing its libraries"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libwrap0 libpcre2-8-0 >/dev/null
    fi
    echo "$dest$prog"
}
HPA=$(peer tftpd-hpa /usr/sbin/in.tftpd)
ATFTPD=$(peer atftpd /usr/sbin/atftpd)
command -v perf >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null 2>&1 || true
command -v perf >/dev/null 2>&1 || { log "perf is needed for the CPU figures"; exit 1; }
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
head -c 32000000 /dev/urandom >"$WORK/root/f32m"
head -c 20000000 /dev/urandom >"$WORK/root/f20m"
head -c 1048576 /dev/urandom >"$WORK/root/f1m"
chmod -R a+rwX "$WORK"
RUNAS=tftp; id tftp >/dev/null 2>&1 || RUNAS=nobody

free_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME PORT [extra ftpdlib flags]: a fresh server under perf; sets PERF[NAME].
declare -A PERF PORT
start() {
    local name=$1 port=$2; shift 2
    local out=$WORK/perf.$name
    case $name in
        hpa) perf stat -x, -e task-clock -o "$out" -- "$HPA" -L -a "127.0.0.1:$port" -s -u "$RUNAS" "$WORK/root" 2>/dev/null & ;;
        atftpd) perf stat -x, -e task-clock -o "$out" -- "$ATFTPD" --daemon --no-fork --port "$port" \
            --bind-address 127.0.0.1 --user "$RUNAS" --group nogroup --logfile /dev/null --maxthread 100 "$WORK/root" 2>/dev/null & ;;
        ours*) RUST_LOG=warn perf stat -x, -e task-clock -o "$out" -- "$TFTPD" --root "$WORK/root" \
            --address 127.0.0.1 --port "$port" "$@" 2>/dev/null & ;;
    esac
    PERF[$name]=$!; PIDS+=($!); PORT[$name]=$port
}
# stop NAME: stops the server; sets CPU to its CPU seconds (perf writes them when the server
# exits, so this runs in the script's own shell, never in $(...), to wait for perf).
stop() {
    local srv
    srv=$(pgrep -P "${PERF[$1]}" | head -1)
    kill "$srv" 2>/dev/null || true
    wait "${PERF[$1]}" 2>/dev/null || true
    CPU=$(awk -F, '/task-clock/{printf "%.3f", $1/1000}' "$WORK/perf.$1")
}
median() { sort -g | awk '{v[NR]=$1} END {print (NR ? v[int((NR+1)/2)] : "n/a")}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
mbps() { { "$CLIENT" "$@" || true; } | sed -n 's/.*MBps=\([0-9.]*\).*/\1/p'; }

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), loopback, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "peers: tftp-hpa $(cat "$PEERS/tftpd-hpa.version" 2>/dev/null), atftpd $(cat "$PEERS/atftpd.version" 2>/dev/null); medians of $ROUNDS rounds"
echo

# phase LABEL "SERVERS" CLIENT-ARGS...: fresh servers, ROUNDS interleaved downloads of f32m;
# prints a table row: MB/s and CPU s per download for each server, then ftpdlib's MB/s over
# the first server's.
phase() {
    local label=$1 servers=$2; shift 2
    local -A R
    local s first="" row="| $label"
    for s in $servers; do start "$s" "$(free_port)"; done
    sleep 0.5
    for _ in $(seq "$ROUNDS"); do
        for s in $servers; do
            R[$s]+="$(mbps "127.0.0.1:${PORT[$s]}" f32m --expect 32000000 "$@") "
        done
    done
    for s in $servers; do
        local m cpu
        m=$(echo "${R[$s]}" | tr ' ' '\n' | grep . | median)
        stop "$s"
        row+=" | $m MB/s, $(awk -v c="$CPU" -v r="$ROUNDS" 'BEGIN{printf "%.3f", c/r}') s"
        [ -n "$first" ] || first=$m
        [ "$s" != ours ] || row+=" | $(ratio "$m" "$first")x"
    done
    echo "$row |"
}

echo "1. single stream, 32 MB: MB/s, server CPU per download"
echo "| blksize | tftp-hpa | atftpd | ftpdlib | ftpdlib / tftp-hpa |"
echo "|---|---:|---:|---:|---:|"
for bs in 512 1468 65464; do phase "$bs" "hpa atftpd ours" --blksize "$bs"; done
echo
echo "2. windowsize 16, 32 MB: MB/s, server CPU per download"
echo "| blksize | atftpd | ftpdlib | ftpdlib / atftpd |"
echo "|---|---:|---:|---:|"
for bs in 512 1468 65464; do phase "$bs" "atftpd ours" --blksize "$bs" --windowsize 16; done
echo

echo "3. 20 MB at blksize 65464, windowsize 16, 20 times"
start ours "$(free_port)"
sleep 0.3
RUNS=()
ok=0
for _ in $(seq 20); do
    r=$(mbps "127.0.0.1:${PORT[ours]}" f20m --blksize 65464 --windowsize 16 --expect 20000000 || true)
    if [ -n "$r" ] && [ "$(awk -v r="$r" 'BEGIN{print (r>0)}')" = 1 ]; then ok=$((ok + 1)); RUNS+=("$r"); fi
done
stop ours
printf '%s\n' "${RUNS[@]}" | sort -g | awk -v ok="$ok" '{v[NR]=$1} END {printf "completed %d of 20; MB/s min %s, median %s, max %s; over 1000 MB/s: %d\n", ok, v[1], v[int((NR+1)/2)], v[NR], c} $1>1000 {c++}'
echo

echo "4. 50 concurrent 1 MiB downloads (blksize 512): wall s, server CPU s per run"
echo "| server | wall | CPU |"
echo "|---|---:|---:|"
for s in hpa ours ours_fork; do
    case $s in
        ours) start ours "$(free_port)" --max-sessions-per-ip 0 ;;
        ours_fork) start ours_fork "$(free_port)" --max-sessions-per-ip 0 --fork ;;
        *) start "$s" "$(free_port)" ;;
    esac
done
sleep 0.5
declare -A WALL
for _ in $(seq "$ROUNDS"); do
    for s in hpa ours ours_fork; do
        WALL[$s]+="$("$CLIENT" "127.0.0.1:${PORT[$s]}" f1m --count 50 --concurrency 50 --expect 1048576 | sed -n 's/.*secs=\([0-9.]*\).*/\1/p') "
    done
done
for s in hpa ours ours_fork; do
    stop "$s"
    case $s in hpa) label=tftp-hpa;; ours) label=ftpdlib;; ours_fork) label="ftpdlib --fork";; esac
    echo "| $label | $(echo "${WALL[$s]}" | tr ' ' '\n' | grep . | median) | $(awk -v c="$CPU" -v r="$ROUNDS" 'BEGIN{printf "%.3f", c/r}') |"
done
echo

if [ "$LOSS" = 1 ]; then
    echo "5. loss table (downloads through the lossy relay; median time of 3, DATA packets per block)"
    start hpa "$(free_port)"
    start atftpd "$(free_port)"
    sleep 0.3
    TFTP_LOSS_ROOT=$WORK/root TFTP_LOSS_TARGETS="tftp-hpa=127.0.0.1:${PORT[hpa]},atftpd=127.0.0.1:${PORT[atftpd]}" \
        cargo test --release --quiet --test tftp_loss -- --ignored loss_table --nocapture 2>/dev/null | grep '^|'
    stop hpa
    stop atftpd
    echo
fi
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
