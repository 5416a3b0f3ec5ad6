#!/usr/bin/env bash
# compare.sh: ftpdlib (every concurrency model) against pyftpdlib, vsftpd, proftpd and
# pure-ftpd, on loopback, with scripts/ftpbench; prints one markdown table of medians with
# ftpdlib's ratio to the best peer, and the loopback limit measured in the same run.
#
#   scripts/compare.sh            # full run: 3 rounds, 1,000 clients, 4 MB files (~18 min)
#   scripts/compare.sh --quick    # 1 round, 100 clients, 1 MB files (~1-2 min)
#   scripts/compare.sh --help
#
# Needs root for the system servers (a local user `ftpbench`; apt-get install vsftpd;
# proftpd-core and pure-ftpd unpacked from their Debian packages into a cache, see
# deb_binary); installs pyftpdlib into a cached venv with pip when python3 lacks it. Servers
# listen on 127.0.0.1 on free ports only, in the foreground, with their config in the work
# directory; every server is started and stopped by this script (by pid).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_USER=ftpbench
BENCH_PASS=ftpbench-pass

QUICK=0
ROUNDS=
CLIENTS=
SIZE=
TRANSFER=
DURATION=
LIST_FILES=10000
LIST_REPS=
SERVERS="ftpdlib-pool ftpdlib-multi-thread ftpdlib-multi-proc ftpdlib-pre-fork pyftpdlib vsftpd proftpd pure-ftpd"
OUT=
BUILD=1
TMPBASE=
BUDGET=
PHASE_LIMIT=30
KEEP=0

usage() {
    cat <<EOF
Usage: scripts/compare.sh [options]
  --quick              1 round, 100 clients, 1M files, 128M transfers, 0.5 s rate windows
  --rounds N           rounds of A B C ... interleaving (default 3; quick 1)
  --clients N          clients of the concurrence workloads (default 1000; quick 100)
  --size SIZE          file each of those clients transfers (default 4M; quick 1M)
  --transfer-size SIZE one-client STOR/RETR file (default 512M; quick 128M)
  --duration SECS      rate windows: RETR loop, logins/s, loopback (default 2; quick 0.5)
  --list-files N       files in the LIST/MLSD directory (default 10000)
  --servers "A B ..."  subset/order of: ftpdlib-pool ftpdlib-multi-thread ftpdlib-multi-proc
                       ftpdlib-pre-fork pyftpdlib pyftpdlib-multi-thread pyftpdlib-multi-proc
                       pyftpdlib-pre-fork vsftpd proftpd pure-ftpd; an ftpdlib name
                       with -metrics appended (ftpdlib-pool-metrics) serves --metrics too
                       (default: the four ftpdlib models, pyftpdlib, vsftpd, proftpd,
                       pure-ftpd; the system servers need root)
  --no-build           do not run cargo build --release for ftpdlib
  --tmpdir DIR         where the served directory lives (default /dev/shm when it has room:
                       the figures are about the servers, not the disk)
  --budget SECS        stop starting new server runs after this long (default 1200; quick 240)
  --phase-limit SECS   seconds any one ftpbench phase may take (default 30: ftpdlib's
                       slowest phase takes ~4 s; a server stalling longer gets n/a there)
  --out FILE           also write the markdown table to FILE
  --keep               keep the work directory (logs, raw CSV)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --size) SIZE=$2; shift ;;
        --transfer-size) TRANSFER=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --list-files) LIST_FILES=$2; shift ;;
        --servers) SERVERS=$2; shift ;;
        --no-build) BUILD=0 ;;
        --tmpdir) TMPBASE=$2; shift ;;
        --budget) BUDGET=$2; shift ;;
        --phase-limit) PHASE_LIMIT=$2; shift ;;
        --out) OUT=$2; shift ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    : "${ROUNDS:=1}" "${CLIENTS:=100}" "${SIZE:=1M}" "${TRANSFER:=128M}" "${DURATION:=0.5}"
    : "${LIST_REPS:=1}" "${BUDGET:=240}"
else
    : "${ROUNDS:=3}" "${CLIENTS:=1000}" "${SIZE:=4M}" "${TRANSFER:=512M}" "${DURATION:=2}"
    : "${LIST_REPS:=3}" "${BUDGET:=1200}"
fi

log() { echo "compare.sh: $*" >&2; }

apt_install() {
    [ "$(id -u)" = 0 ] || { log "not root: cannot apt-get install $*"; return 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; }
}

# python3 runs pyftpdlib and also does the script's arithmetic, file making and the table.
command -v python3 >/dev/null 2>&1 || apt_install python3 || { log "python3 is needed"; exit 1; }

# --- file descriptors: 1,000 clients are ~2,000 sockets on each side -----------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CLIENTS * 3 + 100)) ]; then
    log "warning: ulimit -n is $(ulimit -n), below the $((CLIENTS * 3 + 100)) that $CLIENTS clients need"
fi

# --- work directory --------------------------------------------------------------------------
size_bytes() { python3 -c 'import sys
s=sys.argv[1].strip().upper(); m={"K":1<<10,"M":1<<20,"G":1<<30}
print(int(float(s[:-1])*m[s[-1]]) if s[-1] in m else int(s))' "$1"; }
NEED=$(( $(size_bytes "$SIZE") * CLIENTS + $(size_bytes "$TRANSFER") + (512 << 20) ))
if [ -z "$TMPBASE" ]; then
    TMPBASE=/tmp
    if [ -d /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR==2 {print $4}')" -gt $((NEED * 2 / 1024)) ]; then
        TMPBASE=/dev/shm
    fi
fi
WORK=$(mktemp -d "$TMPBASE/ftpbench-compare.XXXXXX")
chmod 755 "$WORK"
DIR=$WORK/root
RES=$WORK/results
mkdir -p "$DIR" "$RES"
SPID=
cleanup() {
    stop_server
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The LIST/MLSD directory, made on disk (10,000 STORs over FTP would dominate the run).
mkdir -p "$DIR/ftpbench-list"
python3 - "$DIR/ftpbench-list" "$LIST_FILES" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    open(os.path.join(d, "f%06d" % i), "wb").close()
EOF

# --- tools -----------------------------------------------------------------------------------
log "building ftpbench"
cargo build --release --quiet --manifest-path "$ROOT/scripts/ftpbench/Cargo.toml"
FTPBENCH=$ROOT/scripts/ftpbench/target/release/ftpbench

FTPDLIB=$ROOT/target/release/ftpdlib
case " $SERVERS " in
    *" ftpdlib-"*)
        if [ "$BUILD" = 1 ]; then
            log "building ftpdlib (cargo build --release)"
            (cd "$ROOT" && cargo build --release --quiet) || log "ftpdlib build failed; its rows will say pending"
        fi ;;
esac

PY=
PYPATH=
setup_pyftpdlib() {
    if python3 -c 'import pyftpdlib' 2>/dev/null; then PY=python3; return 0; fi
    local venv=${FTPBENCH_VENV:-/tmp/ftpbench-venv}
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pyftpdlib' 2>/dev/null; then
        PY=$venv/bin/python; return 0
    fi
    log "installing pyftpdlib into $venv"
    if python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv && python3 -m venv "$venv"; }; then
        if "$venv/bin/pip" install -q pyftpdlib >/dev/null 2>&1; then PY=$venv/bin/python; return 0; fi
    fi
    if python3 -m pip install -q --target "$venv-site" pyftpdlib >/dev/null 2>&1; then
        PY=python3; PYPATH=$venv-site; return 0
    fi
    return 1
}

# The local user the system servers (vsftpd, proftpd, pure-ftpd) log in as, with a login
# shell listed in /etc/shells (Debian's PAM stack for vsftpd has pam_shells). Root only.
setup_bench_user() {
    [ "$(id -u)" = 0 ] || { log "a local user $BENCH_USER needs root"; return 1; }
    if ! id "$BENCH_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir / --shell /bin/bash "$BENCH_USER"
    fi
    echo "$BENCH_USER:$BENCH_PASS" | chpasswd
}

setup_vsftpd() {
    command -v vsftpd >/dev/null 2>&1 || [ -x /usr/sbin/vsftpd ] || { log "installing vsftpd"; apt_install vsftpd; } || return 1
    [ "$(id -u)" = 0 ] || { log "vsftpd needs root (a local user and PAM)"; return 1; }
    setup_bench_user || return 1
    mkdir -p /var/run/vsftpd/empty
    cat >"$WORK/vsftpd.conf" <<EOF
# Written by scripts/compare.sh. Standalone, foreground, loopback only.
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=@PORT@
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
# The same directory as the other servers. vsftpd chroots local users there and refuses a
# writable chroot root unless told it is fine (it is: a throwaway benchmark directory).
local_root=$DIR
chroot_local_user=YES
allow_writeable_chroot=YES
pasv_enable=YES
pasv_address=127.0.0.1
# seccomp and namespace sandboxing fail in containers ("500 OOPS: prctl PR_SET_SECCOMP").
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
max_clients=0
max_per_ip=0
xferlog_enable=NO
dirmessage_enable=NO
use_localtime=NO
secure_chroot_dir=/var/run/vsftpd/empty
pam_service_name=vsftpd
ssl_enable=NO
idle_session_timeout=600
data_connection_timeout=300
EOF
}

# deb_binary PKG PATH: prints the path of the program PATH (e.g. /usr/sbin/proftpd) of Debian
# package PKG. The installed one when there is one; otherwise the package is fetched with
# `apt-get download` and unpacked (dpkg-deb -x) into a cache, ${FTPBENCH_PEERS:-/tmp/ftpbench-peers}/PKG,
# and only the shared libraries it depends on are installed with apt-get. Not `apt-get install`:
# vsftpd, proftpd-core and pure-ftpd each conflict with the virtual package ftp-server, so
# one system holds at most one of them, and an install would also start a daemon on port 21
# (where policy-rc.d allows it) and add config under /etc. The package's Debian version goes to
# PKG.version in the cache, for the table header.
deb_binary() {
    local pkg=$1 prog=$2 cache=${FTPBENCH_PEERS:-/tmp/ftpbench-peers}
    if dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' && [ -x "$prog" ]; then
        dpkg-query -W -f '${Version}' "$pkg" >"$WORK/$pkg.version" 2>/dev/null || true
        echo "$prog"; return 0
    fi
    local dest=$cache/$pkg deb
    if [ ! -x "$dest$prog" ]; then
        [ "$(id -u)" = 0 ] || { log "not root: cannot fetch $pkg"; return 1; }
        log "fetching $pkg into $dest (apt-get download, dpkg-deb -x)"
        mkdir -p "$cache/deb"
        rm -f "$cache/deb/${pkg}_"*.deb
        (cd "$cache/deb" && { apt-get download -q "$pkg" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 && apt-get download -q "$pkg" >/dev/null 2>&1; }; }) ||
            { log "apt-get download $pkg failed"; return 1; }
        local debs=("$cache/deb/${pkg}_"*.deb)
        deb=${debs[0]}
        [ -f "$deb" ] || { log "apt-get download $pkg left no .deb"; return 1; }
        rm -rf "$dest" && mkdir -p "$dest" && dpkg-deb -x "$deb" "$dest" || return 1
        dpkg-deb -f "$deb" Version >"$dest.version"
        # Depends: "a (>= 1), b | c, ..." -> the first alternative of each, libraries only.
        dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' |
            grep '^lib' >"$dest.libs" || true
    fi
    if ldd "$dest$prog" 2>/dev/null | grep -q 'not found'; then
        # Only the missing ones: apt-get install of an installed package would upgrade it.
        local lib missing=()
        while read -r lib; do
            dpkg-query -W -f '${Status}' "$lib" 2>/dev/null | grep -q 'ok installed' || missing+=("$lib")
        done <"$dest.libs"
        log "$pkg: installing ${missing[*]}"
        [ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}" ||
            { log "$pkg: its libraries could not be installed"; return 1; }
    fi
    cp "$dest.version" "$WORK/$pkg.version" 2>/dev/null || true
    echo "$dest$prog"
}

PROFTPD=
setup_proftpd() {
    [ "$(id -u)" = 0 ] || { log "proftpd needs root (a local user, chroot)"; return 1; }
    PROFTPD=$(deb_binary proftpd-core /usr/sbin/proftpd) || return 1
    setup_bench_user || return 1
    local group
    group=$(id -gn "$BENCH_USER")
    cat >"$WORK/proftpd.conf" <<EOF
# Written by scripts/compare.sh, run as proftpd -n -c FILE: standalone, foreground, loopback only.
# Its log (a few lines per session) goes to stderr. Built in, not configurable: after any
# interrupted system call (the listener's select() on every SIGCHLD of an ending session) the
# master pauses 0.2 s (PR_TUNABLE_EINTR_RETRY_INTERVAL), which bounds sequential logins.
ServerType standalone
ServerName "ftpbench proftpd"
UseIPv6 off
DefaultAddress 127.0.0.1
SocketBindTight on
Port @PORT@
# Sessions switch to the logged-in user; the listener runs as this one.
User $BENCH_USER
Group $group
MaxInstances $((CLIENTS * 2 + 100))
# No scoreboard (the ftpwho/ftptop table; MaxInstances is counted by the master without it).
# Sessions that start or end together contend for its lock, and each failed try backs off
# 0.4 s (two 0.2 s EINTR pauses, see above): 100 clients QUIT in 0.4 s instead of 0.04 s.
ScoreboardFile /dev/null
PidFile $WORK/proftpd-@PORT@.pid
UseReverseDNS off
<IfModule mod_ident.c>
  IdentLookups off
</IfModule>
# mod_delay pads every login (USER/PASS) to a learned minimum time, on purpose, against
# timing attacks on user names; off, so logins cost what the server's work costs.
<IfModule mod_delay.c>
  DelayEngine off
</IfModule>
# The local user's /etc/shadow password, read by mod_auth_unix (no PAM service needed); the
# same user and password as vsftpd and pure-ftpd.
<IfModule mod_auth_pam.c>
  AuthPAM off
</IfModule>
AuthOrder mod_auth_unix.c
RequireValidShell off
WtmpLog off
TransferLog none
# No .ftpaccess files to look for: without this a LIST makes five stat calls per entry, not three.
AllowOverride off
# The same directory as the other servers: the user is chrooted there and starts in it (its
# home, /, is the chroot's root).
DefaultRoot $DIR
AllowOverwrite on
Umask 022
TimeoutIdle 600
EOF
}

PUREFTPD=
setup_pure_ftpd() {
    [ "$(id -u)" = 0 ] || { log "pure-ftpd needs root (a local user, chroot)"; return 1; }
    PUREFTPD=$(deb_binary pure-ftpd /usr/sbin/pure-ftpd) || return 1
    setup_bench_user || return 1
    local pw hash
    pw=$(dirname "$(dirname "$PUREFTPD")")/bin/pure-pw
    [ -x "$pw" ] || pw=$(command -v pure-pw) || { log "pure-ftpd: pure-pw missing"; return 1; }
    # A PureDB user file in the work directory: the local user (its uid/gid) with the home
    # $DIR/./ (pure-ftpd chroots at "/./" and starts there), and the very password hash of
    # /etc/shadow, so a login costs the same crypt(3) as with vsftpd and proftpd (pure-pw's
    # own default is a much slower argon2id). -l unix would chroot to the user's home, /.
    hash=$(getent shadow "$BENCH_USER" | cut -d: -f2)
    [ -n "$hash" ] || { log "pure-ftpd: no shadow entry for $BENCH_USER"; return 1; }
    echo "$BENCH_USER:$hash:$(id -u "$BENCH_USER"):$(id -g "$BENCH_USER")::$DIR/./::::::::::::" \
        >"$WORK/pureftpd.passwd"
    chmod 600 "$WORK/pureftpd.passwd"
    "$pw" mkdb "$WORK/pureftpd.pdb" -f "$WORK/pureftpd.passwd" >/dev/null ||
        { log "pure-ftpd: pure-pw mkdb failed"; return 1; }
}

# Waits (at most 60 s) until the kernel's TCP memory is back under its pressure threshold
# (tcp_mem's first value), so a server that left the kernel in TCP memory pressure
# (autotuned buffers under 1,000 downloads) does not slow the next server down.
settle_tcp_memory() {
    local low used waited=0
    low=$(awk '{print $1}' /proc/sys/net/ipv4/tcp_mem 2>/dev/null) || return 0
    [ -n "$low" ] || return 0
    while :; do
        used=$(awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat)
        if [ -z "$used" ] || [ "$used" -lt "$low" ]; then
            [ "$waited" = 0 ] || log "waited ${waited} s for TCP memory to fall under $low pages"
            return 0
        fi
        if [ "$waited" -ge 60 ]; then
            log "TCP memory still $used pages (pressure threshold $low) after 60 s; going on"
            return 0
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits for a 220 greeting on 127.0.0.1:$1 while pid $2 lives (at most 10 s).
wait_greeting() {
    local _
    for _ in $(seq 50); do
        kill -0 "$2" 2>/dev/null || return 1
        if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 3 <&3" 2>/dev/null | grep -q 220; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# Flags the server's --help offers: --max-cons (pyftpdlib's default 512 is below 1,000).
# pyftpdlib 2.2's --max-cons-per-ip defaults to max_cons (512), not "unlimited" as its help says.
max_cons_flag() {
    local help
    help=$(timeout 5 "$@" --help 2>&1 || true)
    if grep -qE -- '--max-cons([^-]|$)' <<<"$help"; then echo -n "--max-cons $((CLIENTS * 2 + 100)) "; fi
    if grep -q -- '--max-cons-per-ip' <<<"$help"; then echo -n "--max-cons-per-ip $((CLIENTS * 2 + 100))"; fi
}

# start_server NAME PORT: sets SPID (a new session: its process group id is SPID; setsid does
# not fork here because a background job of a non-interactive shell leads no process group).
start_server() {
    local name=$1 port=$2 logf=$WORK/$1.log
    # Same owner for every server: vsftpd works as $BENCH_USER, the others as root.
    find "$DIR" -maxdepth 1 -name 'ftpbench-*' ! -name ftpbench-list -exec rm -f {} +
    if id "$BENCH_USER" >/dev/null 2>&1; then chown -R "$BENCH_USER" "$DIR"; fi
    case "$name" in
        ftpdlib-*)
            local model=${name#ftpdlib-} extra=()
            # NAME-metrics: the same model with the Prometheus endpoint on (what it costs).
            case "$model" in
                *-metrics) model=${model%-metrics}; extra=(--metrics 127.0.0.1:0) ;;
            esac
            [ -x "$FTPDLIB" ] || { log "$name: $FTPDLIB missing (server not merged yet?): skipped"; return 1; }
            # shellcheck disable=SC2046
            setsid "$FTPDLIB" -i 127.0.0.1 -p "$port" -d "$DIR" -w -u "$BENCH_USER" -P "$BENCH_PASS" \
                --concurrency "$model" $(max_cons_flag "$FTPDLIB") "${extra[@]}" >"$logf" 2>&1 &
            ;;
        pyftpdlib|pyftpdlib-multi-thread|pyftpdlib-multi-proc|pyftpdlib-pre-fork)
            [ -n "$PY" ] || { log "$name: pyftpdlib unavailable: skipped"; return 1; }
            local model=async
            [ "$name" = pyftpdlib ] || model=${name#pyftpdlib-}
            # pyftpdlib 2.2's CLI crashes for multi-thread and multi-proc (it passes
            # worker_processes= to their serve_forever), so those run through the script below.
            if { [ "$model" = async ] || [ "$model" = pre-fork ]; } &&
                PYTHONPATH=$PYPATH timeout 10 "$PY" -m pyftpdlib --help 2>&1 | grep -q -- '--concurrency'; then
                # shellcheck disable=SC2046
                PYTHONPATH=$PYPATH setsid "$PY" -m pyftpdlib -i 127.0.0.1 -p "$port" -d "$DIR" -w \
                    -u "$BENCH_USER" -P "$BENCH_PASS" --concurrency "$model" \
                    $(PYTHONPATH=$PYPATH max_cons_flag "$PY" -m pyftpdlib) >"$logf" 2>&1 &
            else
                # Older pyftpdlib (no --concurrency), or a model its CLI cannot start: pick the
                # server class in a tiny script with the CLI's settings (-w = "elradfmwMT").
                local cls=FTPServer
                case "$model" in multi-thread) cls=ThreadedFTPServer ;; multi-proc) cls=MultiprocessFTPServer ;; esac
                PYTHONPATH=$PYPATH setsid "$PY" - "$port" "$DIR" "$BENCH_USER" "$BENCH_PASS" "$cls" \
                    "$((CLIENTS * 2 + 100))" >"$logf" 2>&1 <<'EOF' &
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
import pyftpdlib.servers as servers
port, root, user, pw, cls, maxc = sys.argv[1:7]
auth = DummyAuthorizer()
auth.add_user(user, pw, root, perm="elradfmwMT")
FTPHandler.authorizer = auth
server = getattr(servers, cls)(("127.0.0.1", int(port)), FTPHandler)
server.max_cons = int(maxc)
server.max_cons_per_ip = int(maxc)
server.serve_forever()
EOF
            fi
            ;;
        vsftpd)
            [ -f "$WORK/vsftpd.conf" ] || { log "vsftpd unavailable: skipped"; return 1; }
            sed "s/@PORT@/$port/" "$WORK/vsftpd.conf" >"$WORK/vsftpd-$port.conf"
            local vs
            vs=$(command -v vsftpd || echo /usr/sbin/vsftpd)
            setsid "$vs" "$WORK/vsftpd-$port.conf" >"$logf" 2>&1 &
            ;;
        proftpd)
            [ -f "$WORK/proftpd.conf" ] || { log "proftpd unavailable: skipped"; return 1; }
            sed "s/@PORT@/$port/" "$WORK/proftpd.conf" >"$WORK/proftpd-$port.conf"
            # -n: foreground, no daemon (it still forks one process per session).
            setsid "$PROFTPD" -n -c "$WORK/proftpd-$port.conf" >"$logf" 2>&1 &
            ;;
        pure-ftpd)
            [ -f "$WORK/pureftpd.pdb" ] || { log "pure-ftpd unavailable: skipped"; return 1; }
            # Foreground (no -B); -A chroot everyone, -E no anonymous, -H no DNS lookups,
            # -c/-C clients in all and per IP, -L the listing limit (files:depth; the default
            # would cut the big directory), -I idle minutes; uploads and overwrites are allowed
            # by default.
            setsid "$PUREFTPD" -S "127.0.0.1,$port" -4 -A -E -H -c "$((CLIENTS * 2 + 100))" \
                -C "$((CLIENTS * 2 + 100))" -L "$((LIST_FILES * 2 + 100)):5" -I 10 \
                -l "puredb:$WORK/pureftpd.pdb" >"$logf" 2>&1 &
            ;;
        *) log "unknown server $name: skipped"; return 1 ;;
    esac
    SPID=$!
    if ! wait_greeting "$port" "$SPID"; then
        if [ -s "$logf" ]; then
            log "$name did not greet on port $port: skipped; the end of its log:"
            tail -n 5 "$logf" >&2 || true
        else
            log "$name exited or did not greet on port $port, without a word (not merged yet?): skipped"
        fi
        stop_server
        return 1
    fi
}

stop_server() {
    [ -n "$SPID" ] || return 0
    # The server's own process group (setsid), so forked session processes go too.
    kill -TERM -- "-$SPID" 2>/dev/null || kill -TERM "$SPID" 2>/dev/null || true
    local _
    for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}

# --- peers -----------------------------------------------------------------------------------
case " $SERVERS " in *" pyftpdlib"*) setup_pyftpdlib || log "pyftpdlib could not be installed" ;; esac
case " $SERVERS " in *" vsftpd "*) setup_vsftpd || { log "vsftpd could not be set up"; rm -f "$WORK/vsftpd.conf"; } ;; esac
case " $SERVERS " in *" proftpd "*) setup_proftpd || { log "proftpd could not be set up"; rm -f "$WORK/proftpd.conf"; } ;; esac
case " $SERVERS " in *" pure-ftpd "*) setup_pure_ftpd || { log "pure-ftpd could not be set up"; rm -f "$WORK/pureftpd.pdb"; } ;; esac

# --- the rounds ------------------------------------------------------------------------------
BENCH_ARGS=(-H 127.0.0.1 -u "$BENCH_USER" -p "$BENCH_PASS" -b all -n "$CLIENTS" -s "$SIZE"
    --transfer-size "$TRANSFER" --duration "$DURATION" --list-files "$LIST_FILES"
    --list-reps "$LIST_REPS" --phase-limit "$PHASE_LIMIT" --csv)
# One loopback-limit sample (short: a 1 s window per figure), into results/loopback/$1.csv.
loopback_limit() {
    mkdir -p "$RES/loopback"
    local t
    t=$(python3 -c 'import sys; print(min(float(sys.argv[1]), 1.0))' "$DURATION")
    # Its file sits beside the served ones (TMPDIR), on the same filesystem.
    TMPDIR=$WORK timeout 60 "$FTPBENCH" --loopback-limit --csv --duration "$t" --transfer-size 256M \
        >"$RES/loopback/$1.csv" 2>>"$WORK/loopback.log" || log "loopback limit failed"
}

log "work dir $WORK; servers: $SERVERS; $ROUNDS round(s), $CLIENTS clients, $SIZE files"
START=$SECONDS
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A SKIP=()
for round in $(seq "$ROUNDS"); do
    for s in $SERVERS; do
        [ -z "${SKIP[$s]:-}" ] || continue
        if [ $((SECONDS - START)) -gt "$BUDGET" ]; then
            log "time budget (${BUDGET}s) spent: no more runs"; break 2
        fi
        settle_tcp_memory
        port=$(free_port)
        if ! start_server "$s" "$port"; then SKIP[$s]=1; continue; fi
        # The loopback limit right before and right after each run (the load of a shared
        # machine drifts), so each run is judged against its own limit.
        loopback_limit "$round-$s-before"
        log "round $round: $s (pid $SPID, port $port)"
        mkdir -p "$RES/$s"
        t0=$SECONDS
        TMPDIR=$WORK timeout 240 "$FTPBENCH" "${BENCH_ARGS[@]}" -P "$port" -k "$SPID" \
            >"$RES/$s/$round.csv" 2>"$WORK/$s.$round.bench.log" ||
            log "$s: ftpbench reported failures (see $s.$round.bench.log): $(grep -m1 '^ftpbench:' "$WORK/$s.$round.bench.log" || true)"
        log "round $round: $s took $((SECONDS - t0)) s"
        loopback_limit "$round-$s-after"
        stop_server
    done
done

[ -n "$(ls -A "$RES/loopback" 2>/dev/null)" ] || loopback_limit 1-none

# --- the table -------------------------------------------------------------------------------
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
machine="$(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)"
versions="pyftpdlib $(PYTHONPATH=$PYPATH ${PY:-python3} -c 'import pyftpdlib; print(pyftpdlib.__ver__)' 2>/dev/null || echo '?'),"
versions+=" vsftpd $(dpkg-query -W -f '${Version}' vsftpd 2>/dev/null || echo '?'),"
versions+=" proftpd $(cat "$WORK/proftpd-core.version" 2>/dev/null || echo '?'),"
versions+=" pure-ftpd $(cat "$WORK/pure-ftpd.version" 2>/dev/null || echo '?'),"
versions+=" ftpdlib $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')."
versions+=" Load average before/after: $LOAD_BEFORE / $LOAD_AFTER"
TABLE=$(python3 - "$RES" "$SERVERS" "$ROUNDS" "$machine" "$versions" "$CLIENTS" "$SIZE" <<'EOF'
import csv, math, os, statistics, sys
res, servers, rounds, machine, versions, clients, size = sys.argv[1:8]
servers = servers.split()

def load(name):
    """{key: [values]} over every run of `name`, its labels, and {run: {key: value}}."""
    out, runs, labels = {}, {}, {}
    d = os.path.join(res, name)
    if not os.path.isdir(d):
        return out, labels, runs
    for f in sorted(os.listdir(d)):
        run = f.rsplit(".", 1)[0]
        with open(os.path.join(d, f)) as fh:
            for row in csv.DictReader(fh):
                try:
                    v = float(row["value"])
                except (KeyError, ValueError):
                    continue
                labels[row["key"]] = (row["label"], row["unit"])
                if not math.isnan(v):
                    out.setdefault(row["key"], []).append(v)
                    runs.setdefault(run, {})[row["key"]] = v
    return out, labels, runs

data, labels = {}, {
    "stor_mbps": ("STOR 1 client, 256 KiB writes", "MB/s"),
    "retr_mbps": ("RETR 1 client, 256 KiB reads", "MB/s"),
    "list_ms": ("LIST of the big directory", "ms"),
    "mlsd_ms": ("MLSD of the big directory", "ms"),
    "logins_per_s": ("sequential logins (connect, USER, PASS, QUIT)", "/s"),
    "connect_login_s": ("%s clients connect+login" % clients, "s"),
    "mem_base_kib": ("server PSS before the clients", "KiB"),
    "mem_per_client_kib": ("PSS per idle logged-in client", "KiB"),
    "stor_idle_mbps": ("STOR 1 file with %s idle clients" % clients, "MB/s"),
    "retr_idle_mbps": ("RETR 1 file with %s idle clients" % clients, "MB/s"),
    "multi_retr_s": ("%s clients RETR a %s file at once" % (clients, size), "s"),
    "multi_stor_s": ("%s clients STOR a %s file at once" % (clients, size), "s"),
    "quit_s": ("%s clients QUIT" % clients, "s"),
}
runs = {}
for s in servers + ["loopback"]:
    data[s], l, runs[s] = load(s)
    for k, v in l.items():
        labels[k] = v

rows = ["stor_mbps", "retr_mbps", "list_ms", "mlsd_ms", "logins_per_s", "connect_login_s",
        "mem_base_kib", "mem_per_client_kib", "stor_idle_mbps", "retr_idle_mbps",
        "multi_retr_s", "multi_stor_s", "quit_s"]
higher = {"MB/s", "/s"}
ours = [s for s in servers if s.startswith("ftpdlib")]
peers = [s for s in servers if not s.startswith("ftpdlib")]

def med(s, k):
    v = data.get(s, {}).get(k)
    return statistics.median(v) if v else None

def fmt(v):
    if v is None:
        return "n/a"
    return "%.3f" % v if abs(v) < 10 else "%.0f" % v if abs(v) >= 1000 else "%.1f" % v

def better(a, b, unit):
    return a > b if unit in higher else a < b

cols = ours + peers
print("Machine: %s. %s. Medians of %s round(s); %s clients, %s files." % (machine, versions, rounds, clients, size))
print()
print("| workload | unit | " + " | ".join(cols) + " | ftpdlib ÷ best peer |")
print("|---|---|" + "---|" * len(cols) + "---|")
for k in rows:
    label, unit = labels.get(k, (k, ""))
    cells = []
    for s in cols:
        v = med(s, k)
        if v is None and s in ours and not data.get(s):
            cells.append("pending")
        else:
            cells.append(fmt(v))
    ratio = ""
    pv = [(med(s, k), s) for s in peers if med(s, k) is not None]
    ov = [(med(s, k), s) for s in ours if med(s, k) is not None]
    if pv and ov and k != "mem_base_kib":
        bp = pv[0]
        for p in pv[1:]:
            if better(p[0], bp[0], unit):
                bp = p
        bo = ov[0]
        for o in ov[1:]:
            if better(o[0], bo[0], unit):
                bo = o
        if bo[0] > 0 and bp[0] > 0:
            r = bo[0] / bp[0] if unit in higher else bp[0] / bo[0]
            ratio = "%.2f× (%s vs %s)" % (r, bo[1].replace("ftpdlib-", ""), bp[1])
    elif not ov and ours:
        ratio = "pending"
    print("| %s | %s | %s | %s |" % (label, unit, " | ".join(cells), ratio))
def pct(p):
    return "%.1f%%" % p if p < 10 else "%.0f%%" % p

# The targets that are judged against the loopback limit: each run as a share of the limit
# measured right before it, median over the rounds.
# (RETR against sendfile is measured by ftpbench itself in interleaved windows: retr_sendfile_pct.)
cells = []
for s in cols:
    v = med(s, "retr_sendfile_pct")
    cells.append("pending" if v is None and s in ours and not data.get(s)
                 else "n/a" if v is None else pct(v))
print("| RETR 1 client ÷ loopback sendfile, interleaved | %% | %s | |" % " | ".join(cells))
for k, lk, what in [("stor_mbps", "loopback_write_mbps", "STOR 1 client ÷ loopback write"),
                    ("logins_per_s", "loopback_connect_per_s", "logins/s ÷ loopback connects/s")]:
    cells = []
    for s in cols:
        shares = []
        for run, figs in runs.get(s, {}).items():
            # A limit is the best the machine did around this run: the higher sample.
            lims = [runs["loopback"].get("%s-%s-%s" % (run, s, w), {}).get(lk)
                    for w in ("before", "after")]
            lims = [v for v in lims if v]
            lim = max(lims) if lims else None
            if k in figs and lim:
                shares.append(100 * figs[k] / lim)
        cells.append("pending" if not shares and s in ours and not data.get(s)
                     else pct(statistics.median(shares)) if shares else "n/a")
    print("| %s | %% | %s | |" % (what, " | ".join(cells)))
print()
lims = []
for k in ["loopback_sendfile_mbps", "loopback_write_mbps", "loopback_connect_per_s"]:
    v = med("loopback", k)
    if v is not None:
        lims.append("%s %s %s" % (labels[k][0], fmt(v), labels[k][1]))
if lims:
    print("Loopback limit (no FTP; measured before and after every server run, median): " + "; ".join(lims) + ".")
print()
print("Ratio > 1: ftpdlib's best model beats the best peer (rates: ours/peer; times and memory: peer/ours).")
EOF
)
echo "$TABLE"
if [ -n "$OUT" ]; then echo "$TABLE" >"$OUT"; log "table written to $OUT"; fi
log "done in $((SECONDS - START)) s"
