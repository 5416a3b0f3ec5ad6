#!/usr/bin/env bash
# users-bench.sh: logins per second with users in SQLite and in PostgreSQL against the
# in-memory DummyAuthorizer (`-u/-P`), in the same run, on loopback, with scripts/ftpbench's
# `logins` workload (connect, USER, PASS, QUIT, server closes). Each configuration is
# measured with 1 client and with N clients at once (N ftpbench processes, rates summed),
# with an argon2id password (ftpdlib's default for new users), a sha512-crypt one (`$6$`,
# 5000 rounds, as imported from /etc/shadow) and as `anonymous` (no hash: the lookup
# alone), rounds interleaved, medians printed as one markdown table.
#
#   scripts/users-bench.sh                 # 3 rounds of 2 s windows, 8 parallel clients
#   scripts/users-bench.sh --quick         # 1 round of 0.5 s windows
#   scripts/users-bench.sh --rounds N --duration SECS --parallel N --no-build --keep
#
# PostgreSQL: Debian's binaries (apt-get install postgresql), a throw-away cluster in the
# work directory on a free 127.0.0.1 port (run as `nobody` when root); without them the
# PostgreSQL rows say n/a. Every process is started and stopped by this script, by pid.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=3
DURATION=2
PARALLEL=8
BUILD=1
KEEP=0
PASS=bench-pass

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) ROUNDS=1; DURATION=0.5 ;;
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --parallel) PARALLEL=$2; shift ;;
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "users-bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "[users-bench] $*" >&2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/users-bench.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    done
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [ "$BUILD" = 1 ]; then
    log "building ftpdlib (release, --features postgres) and ftpbench"
    cargo build --release --quiet --features postgres --manifest-path "$ROOT/Cargo.toml" --bin ftpdlib
    cargo build --release --quiet --manifest-path "$ROOT/scripts/ftpbench/Cargo.toml"
fi
FTPDLIB=$ROOT/target/release/ftpdlib
FTPBENCH=$ROOT/scripts/ftpbench/target/release/ftpbench

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mkdir -p "$WORK/home"
SIX=$(openssl passwd -6 -salt benchsalt "$PASS")

# add_users URL: `argon` (argon2id), `sha` (sha512-crypt), `anonymous`; home $WORK/home.
add_users() {
    "$FTPDLIB" users add anonymous --home "$WORK/home" --users-db "$1" >/dev/null
    echo "$PASS" | "$FTPDLIB" users add argon --home "$WORK/home" --password-stdin --users-db "$1" >/dev/null
    echo "$SIX" | "$FTPDLIB" users add sha --home "$WORK/home" --hash-stdin --users-db "$1" >/dev/null
}

SQLITE_URL="sqlite:$WORK/users.db"
add_users "$SQLITE_URL"

# A throw-away PostgreSQL cluster.
PG_URL=
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ]; then
    as_pg=()
    mkdir -p "$WORK/pg"
    if [ "$(id -u)" = 0 ]; then
        chmod 711 "$WORK"
        chown nobody "$WORK/pg"
        as_pg=(runuser -u nobody --)
    fi
    "${as_pg[@]}" "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres -A trust --no-locale -E UTF8 --no-sync >/dev/null
    PGPORT=$(free_port)
    "${as_pg[@]}" "$PGBIN/postgres" -D "$WORK/pg/data" -h 127.0.0.1 -p "$PGPORT" -k "$WORK/pg" \
        -c fsync=off >"$WORK/pg.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" && break
        sleep 0.1
    done
    PG_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
    add_users "$PG_URL"
    log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT"
else
    log "no PostgreSQL binaries (apt-get install postgresql): PostgreSQL rows are n/a"
fi

# start_server NAME ARGS...: sets PORT and SPID (also added to PIDS).
start_server() {
    local name=$1; shift
    PORT=$(free_port)
    RUST_LOG=warn "$FTPDLIB" -i 127.0.0.1 -p "$PORT" -d "$WORK/home" "$@" \
        </dev/null >/dev/null 2>"$WORK/$name.log" &
    SPID=$!
    PIDS+=("$SPID")
    for _ in $(seq 100); do
        kill -0 "$SPID" 2>/dev/null || break
        if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT && head -c 3 <&3" 2>/dev/null | grep -q 220; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not start: $(cat "$WORK/$name.log")"
    return 1
}

# logins PORT USER CLIENTS: logins per second, summed over CLIENTS ftpbench processes.
logins() {
    local port=$1 user=$2 n=$3 i pids=()
    for i in $(seq "$n"); do
        "$FTPBENCH" -H 127.0.0.1 -P "$port" -u "$user" -p "$PASS" -b logins \
            --duration "$DURATION" --csv >"$WORK/out.$i" 2>/dev/null &
        pids+=($!)
    done
    wait "${pids[@]}"
    cat "$WORK"/out.* | awk -F, '$1=="logins_per_s" {s+=$2} END {printf "%.0f", s}'
    rm -f "$WORK"/out.*
}

CONFIGS=("dummy-anonymous" "sqlite-anonymous" "dummy" "sqlite-argon2id" "sqlite-sha512crypt")
[ -n "$PG_URL" ] && CONFIGS+=("postgres-anonymous" "postgres-argon2id" "postgres-sha512crypt")
RESULTS=$WORK/results.txt
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
    for c in "${CONFIGS[@]}"; do
        case $c in
            dummy) args=(-u argon -P "$PASS"); user=argon ;;
            dummy-anonymous) args=() ;;
            sqlite-*) args=(--users-db "$SQLITE_URL") ;;
            postgres-*) args=(--users-db "$PG_URL") ;;
        esac
        case $c in
            *-argon2id) user=argon ;;
            *-sha512crypt) user=sha ;;
            *-anonymous) user=anonymous ;;
        esac
        start_server "$c" "${args[@]}"
        one=$(logins "$PORT" "$user" 1)
        many=$(logins "$PORT" "$user" "$PARALLEL")
        kill "$SPID"
        while kill -0 "$SPID" 2>/dev/null; do sleep 0.05; done
        log "round $round $c: $one/s (1 client), $many/s ($PARALLEL clients)"
        echo "$c $one $many" >>"$RESULTS"
    done
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else printf "%.0f\n", (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "| users | password hash | logins/s, 1 client | logins/s, $PARALLEL clients |"
echo "|---|---|---|---|"
for c in dummy-anonymous sqlite-anonymous postgres-anonymous dummy sqlite-argon2id \
    postgres-argon2id sqlite-sha512crypt postgres-sha512crypt; do
    case $c in
        dummy) u="in memory (\`-u/-P\`, DummyAuthorizer)"; h="plain text" ;;
        dummy-anonymous) u="in memory (DummyAuthorizer)" ;;
        sqlite-*) u="SQLite (\`--users-db sqlite:\`)" ;;
        postgres-*) u="PostgreSQL (\`--users-db postgres://\`)" ;;
    esac
    case $c in
        *-argon2id) h="argon2id (m=19 MiB, t=2)" ;;
        *-sha512crypt) h="sha512-crypt (5000 rounds)" ;;
        *-anonymous) h="none (\`anonymous\`)" ;;
    esac
    one=$(awk -v c="$c" '$1==c {print $2}' "$RESULTS" | median)
    many=$(awk -v c="$c" '$1==c {print $3}' "$RESULTS" | median)
    echo "| $u | $h | $one | $many |"
done
echo
echo "$(nproc) CPUs, $ROUNDS round(s) of ${DURATION} s windows, ftpdlib pool model, RUST_LOG=warn."
