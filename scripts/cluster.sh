#!/usr/bin/env bash
# cluster.sh: ftpdlib past one machine, shown on loopback. A throw-away PostgreSQL cluster
# holds the users (made with `ftpdlib users`); three ftpdlib instances on 127.0.0.2-4 share
# it and one directory, each with its own passive range, advertising the balancer's address
# (-n) and trusting its PROXY headers; HAProxy on 127.0.0.1 in TCP mode balances the
# control port round robin (send-proxy-v2, health checks that read the 220 and send QUIT)
# and relays each instance's passive range to it with a PROXY header too. A client on
# 127.0.0.9 then logs in through HAProxy again and again with curl (EPSV and PASV) and
# lftp (PASV), uploading through one instance and downloading through the next; each
# instance's log shows 127.0.0.9, never the balancer. Every process is started and stopped
# by this script, by pid; the work directory is removed unless --keep.
#
#   scripts/cluster.sh                # PROXY protocol v2, 3 rounds
#   scripts/cluster.sh --v1           # send-proxy (version 1, text) instead
#   scripts/cluster.sh --rounds N --release --no-build --keep
#
# Needs haproxy, curl, lftp, python3 (free ports) and Debian's PostgreSQL
# (/usr/lib/postgresql/*/bin): apt-get install haproxy curl lftp postgresql.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SEND=send-proxy-v2
ROUNDS=3
BUILD=1
KEEP=0
PROFILE=debug
RANGE=10
CLIENT=127.0.0.9
PASS=s3cret

while [ $# -gt 0 ]; do
    case "$1" in
        --v1) SEND=send-proxy ;;
        --rounds) ROUNDS=$2; shift ;;
        --release) PROFILE=release ;;
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "cluster.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "[cluster] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

for tool in haproxy curl lftp python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install $tool)"
done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] || die "no PostgreSQL in /usr/lib/postgresql/*/bin (apt-get install postgresql)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ftpdlib-cluster.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$p" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [ "$BUILD" = 1 ]; then
    log "building ftpdlib ($PROFILE, --features postgres)"
    flags=(--quiet --features postgres --bin ftpdlib --manifest-path "$ROOT/Cargo.toml")
    [ "$PROFILE" = release ] && flags+=(--release)
    cargo build "${flags[@]}"
fi
FTPDLIB=$ROOT/target/$PROFILE/ftpdlib
[ -x "$FTPDLIB" ] || die "$FTPDLIB is missing (run without --no-build)"

# free_port IP: a port free on IP now. free_run N: a base port below the ephemeral range
# whose N ports are free on 127.0.0.1 now (no port-0 bind elsewhere takes one meanwhile).
free_port() {
    python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"
}
free_run() {
    python3 - "$1" <<'EOF'
import os, random, socket, sys
n = int(sys.argv[1])
random.seed(os.getpid())
while True:
    base = random.randrange(20000, 30000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
EOF
}

# --- PostgreSQL: a throw-away cluster (run as nobody when root: PostgreSQL refuses root).
as_pg=()
mkdir -p "$WORK/pg"
if [ "$(id -u)" = 0 ]; then
    chmod 711 "$WORK"
    chown nobody "$WORK/pg"
    as_pg=(runuser -u nobody --)
fi
"${as_pg[@]}" "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres -A trust --no-locale -E UTF8 --no-sync >/dev/null
PGPORT=$(free_port 127.0.0.1)
"${as_pg[@]}" "$PGBIN/postgres" -D "$WORK/pg/data" -h 127.0.0.1 -p "$PGPORT" -k "$WORK/pg" \
    -c fsync=off >"$WORK/postgres.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" && break
    sleep 0.1
done
"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" || die "PostgreSQL did not start: $(cat "$WORK/postgres.log")"
URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
log "PostgreSQL on 127.0.0.1:$PGPORT"

# --- Users, with the CLI: homes relative to the shared directory (-d).
SHARE=$WORK/share
mkdir -p "$SHARE/alice"
echo "$PASS" | "$FTPDLIB" users add alice --home alice --perm elradfmwMT --password-stdin --users-db "$URL" >/dev/null
"$FTPDLIB" users list --users-db "$URL" | sed 's/^/[cluster] users: /' >&2

# --- Three instances on 127.0.0.2-4, one passive range each.
PASV=$(free_run $((3 * RANGE)))
CTRL=$(free_port 127.0.0.1)
SERVERS=()
for i in 1 2 3; do
    ip=127.0.0.$((i + 1))
    lo=$((PASV + (i - 1) * RANGE)); hi=$((lo + RANGE - 1))
    port=$(free_port "$ip")
    "$FTPDLIB" -i "$ip" -p "$port" -d "$SHARE" --users-db "$URL" \
        --proxy-protocol --trusted-proxy 127.0.0.1 -n 127.0.0.1 -r "$lo-$hi" \
        </dev/null >/dev/null 2>"$WORK/ftpd$i.log" &
    PIDS+=($!)
    for _ in $(seq 100); do
        grep -q "starting FTP server on $ip:$port" "$WORK/ftpd$i.log" && break
        sleep 0.1
    done
    grep -q "starting FTP server" "$WORK/ftpd$i.log" || die "instance $i did not start: $(cat "$WORK/ftpd$i.log")"
    SERVERS+=("$ip:$port $lo $hi")
    log "instance $i: control $ip:$port, passive $lo-$hi"
done

# --- HAProxy: round robin with PROXY headers and FTP health checks; one frontend per
# passive range (a server without a port is reached on the port the client asked for).
{
    cat <<EOF
global
  log stderr format raw local0 info
defaults
  mode tcp
  log global
  option tcplog
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout check 5s
frontend ftp
  bind 127.0.0.1:$CTRL
  default_backend ftp
backend ftp
  balance roundrobin
  option tcp-check
  tcp-check expect string 220
  tcp-check send-binary 515549540d0a
  tcp-check expect string 221
  default-server $SEND check inter 2s
EOF
    i=0
    for s in "${SERVERS[@]}"; do
        i=$((i + 1)); set -- $s
        echo "  server ftpd$i $1"
    done
    i=0
    for s in "${SERVERS[@]}"; do
        i=$((i + 1)); set -- $s
        printf 'frontend pasv%s\n  bind 127.0.0.1:%s-%s\n  default_backend pasv%s\n' "$i" "$2" "$3" "$i"
        printf 'backend pasv%s\n  server ftpd%s %s %s\n' "$i" "$i" "${1%:*}" "$SEND"
    done
} >"$WORK/haproxy.cfg"
haproxy -db -f "$WORK/haproxy.cfg" </dev/null >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$CTRL && head -c 3 <&3" 2>/dev/null | grep -q 220 && break
    sleep 0.1
done
timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$CTRL && head -c 3 <&3" 2>/dev/null | grep -q 220 ||
    die "HAProxy did not start: $(cat "$WORK/haproxy.log")"
log "HAProxy on 127.0.0.1:$CTRL ($SEND); client on $CLIENT"

# --- The client: curl (EPSV up, PASV down) and lftp (PASV), every login the next instance.
head -c 300000 /dev/urandom >"$WORK/payload"
FTP="ftp://127.0.0.1:$CTRL"
for r in $(seq "$ROUNDS"); do
    curl -sS --max-time 30 --interface "$CLIENT" -u "alice:$PASS" -T "$WORK/payload" "$FTP/round$r.bin" ||
        die "curl upload (EPSV), round $r"
    curl -sS --max-time 30 --interface "$CLIENT" -u "alice:$PASS" --disable-epsv \
        "$FTP/round$r.bin" -o "$WORK/got-curl" || die "curl download (PASV), round $r"
    cmp -s "$WORK/payload" "$WORK/got-curl" || die "curl downloaded other bytes, round $r"
    lftp -c "set net:socket-bind-ipv4 $CLIENT; set net:max-retries 1; set net:timeout 20;
             set ftp:passive-mode on; open -u alice,$PASS -p $CTRL 127.0.0.1;
             get round$r.bin -o $WORK/got-lftp; cls -1" >"$WORK/lftp.out" ||
        die "lftp, round $r"
    cmp -s "$WORK/payload" "$WORK/got-lftp" || die "lftp downloaded other bytes, round $r"
    rm -f "$WORK/got-lftp" "$WORK/got-curl"
    log "round $r: uploaded, downloaded with curl and lftp ($(tr '\n' ' ' <"$WORK/lftp.out"))"
done

# --- A client that bypasses the balancer is closed: only 127.0.0.1 may connect.
set -- ${SERVERS[0]}
curl -sS --max-time 5 --interface "$CLIENT" "ftp://$1/" >/dev/null 2>&1 &&
    die "a direct connection to an instance was served"
sleep 0.3

# --- What each instance saw: the client's address, through the balancer.
status=0
for i in 1 2 3; do
    f=$WORK/ftpd$i.log
    logins=$(grep -c "^.*$CLIENT:[0-9]*-\[alice\] USER 'alice' logged in" "$f" || true)
    echo "--- instance $i (${SERVERS[$((i - 1))]%% *}): $logins logins from $CLIENT"
    grep -E "$CLIENT:[0-9]+-\[\] FTP session opened|$CLIENT:[0-9]+-\[alice\] (USER|STOR|RETR)|refused" "$f" |
        sed 's/^\[[^]]*\] //' | head -n 8
    [ "$logins" -gt 0 ] || { log "instance $i served no login from $CLIENT"; status=1; }
    if grep -q "127.0.0.1:[0-9]*-\[alice\]" "$f"; then
        log "instance $i logged the balancer's address as a client's"
        status=1
    fi
done
grep -q "not a trusted proxy" "$WORK"/ftpd*.log || { log "the direct connection was not logged as refused"; status=1; }
[ "$status" = 0 ] && log "OK: every instance saw $CLIENT through HAProxy"
exit "$status"
