#!/usr/bin/env bash
# compare.sh: ftpdlib (every concurrency model) against pyftpdlib, vsftpd, proftpd and
# pure-ftpd, on loopback, with scripts/ftpbench: plain FTP transfers, listings, logins and
# many clients; FTPS (the same ECDSA P-256 and RSA 2048 certificates for every server);
# 10,000 logged-in sessions; server CPU and context switches per uploaded byte. Writes markdown tables of
# medians with ftpdlib's ratio to the best peer, the targets met or missed, and one SVG chart
# per workload into an output directory (scripts/compare-report.py); see scripts/README.md.
#
#   scripts/compare.sh            # full run: 3 rounds, every peer (about an hour)
#   scripts/compare.sh --quick    # 1 round, reduced sizes and counts (a few minutes)
#   scripts/compare.sh --help
#
# --baseline BIN measures another ftpdlib binary (say, the last release build before a change)
# in the same rounds: servers base-MODEL, one beside each ftpdlib-MODEL, with a "÷ base" column.
#
# FTPDLIB_EXTRA_FLAGS_B="--metrics 127.0.0.1:0" (say) adds an A/B phase: ftpdlib's login
# workloads run twice per round, without and with those flags, reported side by side.
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
OUT_DIR=
CG_BASES=
BASELINE=
BUILD=1
TMPBASE=
BUDGET=
PHASE_LIMIT=30
KEEP=0
SMALL_IO=1
PLAIN_BENCH=all
unset SECOND_LOAD SESSIONS
FTPS=1
FIRST_BYTE=1
CERTS="ecdsa rsa"
TLS_CLIENTS=
SESSION_SERVERS="ftpdlib-pool ftpdlib-pre-fork pyftpdlib"
# The A/B login phase (see the header): the model, and the flags of its B side.
AB_MODEL=${FTPDLIB_AB_MODEL:-pool}
EXTRA_B=${FTPDLIB_EXTRA_FLAGS_B:-}

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
  --budget SECS        stop starting new server runs after this long (default 5400; quick 600)
  --phase-limit SECS   seconds any one ftpbench phase may take (default 30: ftpdlib's
                       slowest phase takes ~4 s; a server stalling longer gets n/a there)
  --second-load N:SIZE a second concurrence run with N clients and SIZE files (default
                       300:10M; quick none; "" for none)
  --no-small-io        skip the 8 KiB-write STOR / 8 KiB-read RETR phase
  --bench WHAT         ftpbench's -b for the plain phase (default all; e.g. many-stor, or
                       stor,retr: with --no-ftps --sessions "" --second-load "" a short
                       run of a few workloads)
  --no-ftps            skip the FTPS phases (ftpbench -b ftps) and curl's first byte
  --no-first-byte      skip curl's FTPS first byte (scripts/ftps_first_byte.sh, run once
                       after the rounds against ftpdlib's pool and the peers of --servers;
                       its table is appended to table.md as first_byte.md)
  --certs "ecdsa rsa"  the certificates FTPS runs with (ECDSA P-256, RSA 2048)
  --tls-clients N      concurrent FTPS logins (default 100; quick 50)
  --sessions LIST      steps of the many-sessions curve (default 1000,5000,10000; quick
                       200,1000; "" for none)
  --session-servers "A B"  servers of that curve (default: ftpdlib-pool ftpdlib-pre-fork
                       pyftpdlib, those of --servers only)
  --out FILE           also write the markdown tables to FILE
  --out-dir DIR        where table.md, charts/*.svg and the raw CSV go (default
                       target/compare/DATE-TIME under the repository)
  --baseline BIN       also run ftpdlib binary BIN as servers base-MODEL, one beside each
                       ftpdlib-MODEL of --servers (interleaved A/B of two builds)
  --keep               keep the work directory (logs, raw CSV)
Environment: FTPDLIB_EXTRA_FLAGS_B (ftpdlib flags of the A/B login phase's B side; the phase
runs only when set), FTPDLIB_AB_MODEL (its concurrency model, default pool), FTPBENCH_VENV,
FTPBENCH_PEERS (caches of pyftpdlib and of the unpacked peers).
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
        --out-dir) OUT_DIR=$2; shift ;;
        --second-load) SECOND_LOAD=$2; shift ;;
        --no-small-io) SMALL_IO=0 ;;
        --bench) PLAIN_BENCH=$2; shift ;;
        --no-ftps) FTPS=0 ;;
        --no-first-byte) FIRST_BYTE=0 ;;
        --certs) CERTS=$2; shift ;;
        --tls-clients) TLS_CLIENTS=$2; shift ;;
        --sessions) SESSIONS=$2; shift ;;
        --session-servers) SESSION_SERVERS=$2; shift ;;
        --baseline) BASELINE=$2; shift ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

# ${VAR-default} (not :-): an empty --sessions or --second-load means "none".
if [ "$QUICK" = 1 ]; then
    : "${ROUNDS:=1}" "${CLIENTS:=100}" "${SIZE:=1M}" "${TRANSFER:=128M}" "${DURATION:=0.5}"
    : "${LIST_REPS:=1}" "${BUDGET:=600}" "${TLS_CLIENTS:=50}"
    SESSIONS=${SESSIONS-200,1000}
    SECOND_LOAD=${SECOND_LOAD-}
else
    : "${ROUNDS:=3}" "${CLIENTS:=1000}" "${SIZE:=4M}" "${TRANSFER:=512M}" "${DURATION:=2}"
    : "${LIST_REPS:=3}" "${BUDGET:=5400}" "${TLS_CLIENTS:=100}"
    SESSIONS=${SESSIONS-1000,5000,10000}
    SECOND_LOAD=${SECOND_LOAD-300:10M}
fi
# --baseline: base-MODEL right after each ftpdlib-MODEL (A B, A B: the same load for both).
if [ -n "$BASELINE" ]; then
    [ -x "$BASELINE" ] || { echo "compare.sh: --baseline $BASELINE is not an executable" >&2; exit 2; }
    BASELINE=$(cd "$(dirname "$BASELINE")" && pwd)/$(basename "$BASELINE")
    with_base() {
        local s out=
        for s in $1; do
            out+="$s "
            case "$s" in ftpdlib-*) case " $1 " in *" base-${s#ftpdlib-} "*) ;; *) out+="base-${s#ftpdlib-} " ;; esac ;; esac
        done
        echo "${out% }"
    }
    SERVERS=$(with_base "$SERVERS")
    SESSION_SERVERS=$(with_base "$SESSION_SERVERS")
fi
MAX_SESSIONS=$(tr ',' '\n' <<<"$SESSIONS" | sort -n | tail -1)
: "${MAX_SESSIONS:=0}"
case "$SECOND_LOAD" in ''|*:*) ;; *) echo "compare.sh: --second-load wants N:SIZE" >&2; exit 2 ;; esac

log() { echo "compare.sh: $*" >&2; }

apt_install() {
    [ "$(id -u)" = 0 ] || { log "not root: cannot apt-get install $*"; return 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; }
}

# python3 runs pyftpdlib and also does the script's arithmetic, file making and the table.
command -v python3 >/dev/null 2>&1 || apt_install python3 || { log "python3 is needed"; exit 1; }

# --- file descriptors: 1,000 clients are ~2,000 sockets on each side, 10,000 sessions with
# 1,000 listing at once ~12,000 (servers and ftpbench inherit this limit) ----------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NEED_FDS=$((CLIENTS * 3 + 100))
[ "$MAX_SESSIONS" -gt 0 ] && [ $((MAX_SESSIONS + 2200)) -gt "$NEED_FDS" ] && NEED_FDS=$((MAX_SESSIONS + 2200))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEED_FDS" ]; then
    log "warning: ulimit -n is $(ulimit -n), below the $NEED_FDS this run needs"
fi
# Ephemeral ports: every session's control connection, the data connections of one listing
# batch (1,000) and the servers' passive listeners all come from this range on one address
# pair. When it is too small for the largest step, ftpbench's connections fail: say so.
read -r PORT_LO PORT_HI </proc/sys/net/ipv4/ip_local_port_range || true
if [ -n "${PORT_LO:-}" ] && [ $((PORT_HI - PORT_LO)) -lt $((MAX_SESSIONS + 3000)) ]; then
    log "warning: ephemeral ports $PORT_LO-$PORT_HI are too few for $MAX_SESSIONS sessions"
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
    local base
    for base in $CG_BASES; do rmdir "$base"/s* "$base" 2>/dev/null || true; done
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

# --- output directory: table.md, charts/, raw/ ----------------------------------------------
[ -n "$OUT_DIR" ] || OUT_DIR=$ROOT/target/compare/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

# --- certificates: one ECDSA P-256 and one RSA 2048 key, each with a self-signed
# certificate for CN=localhost, shared by every server. $CERTDIR/NAME.crt, NAME.key, and
# NAME.pem (certificate then key: pure-ftpd reads one file). ---------------------------------
CERTDIR=$WORK/certs
make_certs() {
    mkdir -p "$CERTDIR"
    local name
    for name in $CERTS; do
        case "$name" in
            ecdsa) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$CERTDIR/ecdsa.key" 2>/dev/null ;;
            rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$CERTDIR/rsa.key" 2>/dev/null ;;
            *) log "unknown certificate kind $name (ecdsa, rsa)"; return 1 ;;
        esac || return 1
        openssl req -x509 -new -key "$CERTDIR/$name.key" -out "$CERTDIR/$name.crt" -days 30 \
            -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null || return 1
        cat "$CERTDIR/$name.crt" "$CERTDIR/$name.key" >"$CERTDIR/$name.pem"
    done
    chmod 600 "$CERTDIR"/*.key "$CERTDIR"/*.pem
}
if [ "$FTPS" = 1 ]; then
    command -v openssl >/dev/null 2>&1 || apt_install openssl || true
    make_certs || { log "could not make the certificates: no FTPS phases"; FTPS=0; }
fi

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

# pyftpdlib, and pyOpenSSL for its TLS_FTPHandler (FTPS): a python3 that has both, or a
# cached venv with both installed by pip. PY_TLS=1 when pyOpenSSL is there.
PY=
PYPATH=
PY_TLS=0
setup_pyftpdlib() {
    local venv=${FTPBENCH_VENV:-/tmp/ftpbench-venv} py
    for py in python3 "$venv/bin/python"; do
        if "$py" -c 'import pyftpdlib, OpenSSL' 2>/dev/null; then PY=$py; PY_TLS=1; return 0; fi
    done
    log "installing pyftpdlib and pyOpenSSL into $venv"
    if [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >/dev/null 2>&1 ||
        { apt_install python3-venv && python3 -m venv "$venv"; }; then
        if "$venv/bin/pip" install -q pyftpdlib pyopenssl >/dev/null 2>&1; then
            PY=$venv/bin/python; PY_TLS=1; return 0
        fi
    fi
    if python3 -m pip install -q --target "$venv-site" pyftpdlib pyopenssl >/dev/null 2>&1; then
        PY=python3; PYPATH=$venv-site; PY_TLS=1; return 0
    fi
    if python3 -c 'import pyftpdlib' 2>/dev/null; then
        log "pyOpenSSL missing: pyftpdlib runs without FTPS"; PY=python3; return 0
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

# deb_binary PKG PATH: prints the path of the program or module PATH (e.g. /usr/sbin/proftpd,
# /usr/lib/proftpd/mod_tls.so) of Debian package PKG. The installed one when there is one; otherwise the package is fetched with
# `apt-get download` and unpacked (dpkg-deb -x) into a cache, ${FTPBENCH_PEERS:-/tmp/ftpbench-peers}/PKG,
# and only the shared libraries it depends on are installed with apt-get. Not `apt-get install`:
# vsftpd, proftpd-core and pure-ftpd each conflict with the virtual package ftp-server, so
# one system holds at most one of them, and an install would also start a daemon on port 21
# (where policy-rc.d allows it) and add config under /etc. The package's Debian version goes to
# PKG.version in the cache, for the table header.
deb_binary() {
    local pkg=$1 prog=$2 cache=${FTPBENCH_PEERS:-/tmp/ftpbench-peers}
    if dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' && [ -e "$prog" ]; then
        dpkg-query -W -f '${Version}' "$pkg" >"$WORK/$pkg.version" 2>/dev/null || true
        echo "$prog"; return 0
    fi
    local dest=$cache/$pkg deb
    if [ ! -e "$dest$prog" ]; then
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
PROFTPD_MODDIR=
setup_proftpd() {
    [ "$(id -u)" = 0 ] || { log "proftpd needs root (a local user, chroot)"; return 1; }
    PROFTPD=$(deb_binary proftpd-core /usr/sbin/proftpd) || return 1
    # mod_tls comes in Debian's proftpd-mod-crypto (a DSO, loaded with LoadModule).
    if [ "$FTPS" = 1 ]; then
        local so
        if so=$(deb_binary proftpd-mod-crypto /usr/lib/proftpd/mod_tls.so); then
            PROFTPD_MODDIR=$(dirname "$so")
        else
            log "proftpd: no mod_tls (proftpd-mod-crypto): proftpd runs without FTPS"
        fi
    fi
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
MaxInstances @MAXC@
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

# The connection limits every server is started with: twice the most clients any phase
# opens at once, plus room (pyftpdlib's default of 512 is below 1,000). start_server reads
# SERVER_MAXC, which the many-sessions phase raises.
SECOND_N=${SECOND_LOAD%%:*}
MOST=$CLIENTS
for n in "${SECOND_N:-0}" "$TLS_CLIENTS"; do [ "$n" -gt "$MOST" ] && MOST=$n; done
MAXC=$((MOST * 2 + 100))
SERVER_MAXC=$MAXC

# Flags the server's --help offers: --max-cons, and pyftpdlib 2.2's --max-cons-per-ip, which
# defaults to max_cons (512), not "unlimited" as its help says.
max_cons_flag() {
    local help
    help=$(timeout 5 "$@" --help 2>&1 || true)
    if grep -qE -- '--max-cons([^-]|$)' <<<"$help"; then echo -n "--max-cons $SERVER_MAXC "; fi
    if grep -q -- '--max-cons-per-ip' <<<"$help"; then echo -n "--max-cons-per-ip $SERVER_MAXC"; fi
}

# True when server NAME can run FTPS here.
tls_capable() {
    case "$1" in
        ftpdlib-*|base-*|vsftpd|pure-ftpd) return 0 ;;
        pyftpdlib*) [ "$PY_TLS" = 1 ] ;;
        proftpd) [ -n "$PROFTPD_MODDIR" ] ;;
        *) return 1 ;;
    esac
}

# vsftpd's TLS settings, added to its config for an FTPS run with certificate $1. Explicit
# FTPS on request only (plain logins stay allowed, as for every server here), TLS 1.2 and
# 1.3 (OpenSSL's default method), vsftpd's default require_ssl_reuse=YES (a data connection
# must resume the control connection's session, as ftpdlib requires), and ssl_ciphers=HIGH:
# vsftpd 3.0.3's default list is the single suite DES-CBC3-SHA.
vsftpd_tls_conf() {
    cat <<EOF
ssl_enable=YES
rsa_cert_file=$CERTDIR/$1.crt
rsa_private_key_file=$CERTDIR/$1.key
allow_anon_ssl=NO
force_local_data_ssl=NO
force_local_logins_ssl=NO
ssl_sslv2=NO
ssl_sslv3=NO
ssl_tlsv1=YES
require_ssl_reuse=YES
ssl_ciphers=HIGH
EOF
}

# proftpd's TLS settings for certificate $1: mod_tls from proftpd-mod-crypto, TLS 1.2 and
# 1.3, TLS on request, no client certificates, and mod_tls's default that data connections
# resume the control connection's session (no NoSessionReuseRequired).
proftpd_tls_conf() {
    local kind=RSA
    [ "$1" = ecdsa ] && kind=EC
    cat <<EOF
ModulePath $PROFTPD_MODDIR
LoadModule mod_tls.c
<IfModule mod_tls.c>
  TLSEngine on
  TLSProtocol TLSv1.2 TLSv1.3
  TLSRequired off
  TLS${kind}CertificateFile $CERTDIR/$1.crt
  TLS${kind}CertificateKeyFile $CERTDIR/$1.key
  TLSVerifyClient off
  TLSRenegotiate none
</IfModule>
EOF
}

# start_server NAME PORT [CERT]: sets SPID (a new session: its process group id is SPID;
# setsid does not fork here because a background job of a non-interactive shell leads no
# process group). With CERT (ecdsa, rsa) the server offers explicit FTPS with that
# certificate. ftpdlib also gets $SERVER_EXTRA (the A/B phase's flags).
start_server() {
    local name=$1 port=$2 cert=${3:-} logf=$WORK/$1${3:+-$3}.log
    if [ -n "$cert" ] && ! tls_capable "$name"; then
        log "$name: no FTPS here: skipped"; return 1
    fi
    # Same owner for every server: vsftpd works as $BENCH_USER, the others as root.
    find "$DIR" -maxdepth 1 -name 'ftpbench-*' ! -name ftpbench-list -exec rm -f {} +
    if id "$BENCH_USER" >/dev/null 2>&1; then chown -R "$BENCH_USER" "$DIR"; fi
    case "$name" in
        ftpdlib-*|base-*) start_ftpdlib "$name" "$port" "$cert" "$logf" || return 1 ;;
        pyftpdlib*) start_pyftpdlib "$name" "$port" "$cert" "$logf" || return 1 ;;
        vsftpd)
            [ -f "$WORK/vsftpd.conf" ] || { log "vsftpd unavailable: skipped"; return 1; }
            sed "s/@PORT@/$port/; /^ssl_enable=NO/d" "$WORK/vsftpd.conf" >"$WORK/vsftpd-$port.conf"
            if [ -n "$cert" ]; then vsftpd_tls_conf "$cert" >>"$WORK/vsftpd-$port.conf"; fi
            local vs
            vs=$(command -v vsftpd || echo /usr/sbin/vsftpd)
            setsid "$vs" "$WORK/vsftpd-$port.conf" >"$logf" 2>&1 &
            ;;
        proftpd)
            [ -f "$WORK/proftpd.conf" ] || { log "proftpd unavailable: skipped"; return 1; }
            sed "s/@PORT@/$port/; s/@MAXC@/$SERVER_MAXC/" "$WORK/proftpd.conf" >"$WORK/proftpd-$port.conf"
            if [ -n "$cert" ]; then proftpd_tls_conf "$cert" >>"$WORK/proftpd-$port.conf"; fi
            # -n: foreground, no daemon (it still forks one process per session).
            setsid "$PROFTPD" -n -c "$WORK/proftpd-$port.conf" >"$logf" 2>&1 &
            ;;
        pure-ftpd)
            [ -f "$WORK/pureftpd.pdb" ] || { log "pure-ftpd unavailable: skipped"; return 1; }
            # Foreground (no -B); -A chroot everyone, -E no anonymous, -H no DNS lookups,
            # -c/-C clients in all and per IP, -L the listing limit (files:depth; the default
            # would cut the big directory), -I idle minutes; uploads and overwrites are allowed
            # by default. FTPS: -Y 1 (TLS on request) with -2 the certificate-and-key file.
            local tls=()
            [ -z "$cert" ] || tls=(-Y 1 -2 "$CERTDIR/$cert.pem")
            setsid "$PUREFTPD" -S "127.0.0.1,$port" -4 -A -E -H -c "$SERVER_MAXC" \
                -C "$SERVER_MAXC" -L "$((LIST_FILES * 2 + 100)):5" -I 10 \
                -l "puredb:$WORK/pureftpd.pdb" "${tls[@]}" >"$logf" 2>&1 &
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
    cgroup_enter
}

# --- CPU accounting and scheduling: every server start gets cgroups of its own, when this
# machine lets root make them (cgroup v1 cpuacct and cpu, or v2).
# - Accounting: ftpbench reads the server's CPU there (--cgroup): exact, and counting
#   processes that exited, where /proc's whole ticks per process undercount servers of
#   many processes.
# - Scheduling: with autogroup (kernel.sched_autogroup_enabled, on here), every session
#   (setsid) in the root cpu cgroup is a scheduling group of its own. vsftpd calls setsid()
#   for each connection, so on a shared machine 300 vsftpd sessions get 300 shares of the
#   CPU against one for a threaded server (and one per build job of everyone else): it
#   measured 0.6x ftpdlib's time for 300 concurrent uploads that way and 1.4-1.8x with both
#   in cpu cgroups of their own. In its own cpu cgroup a server's processes share one
#   weight whatever their sessions, as on a machine of its own.
# CG_BASES are this run's parent cgroups; CGROUP is the running server's accounting
# cgroup (or empty). ---------------------------------------------------------------------
CG_BASES=
CGROUP=
for d in /sys/fs/cgroup/cpuacct /sys/fs/cgroup/cpu /sys/fs/cgroup; do
    [ -w "$d" ] && [ -f "$d/cgroup.procs" ] || continue
    case "$d:$(stat -fc %T "$d" 2>/dev/null)" in
        */cgroup:cgroup2fs) grep -qw cpu "$d/cgroup.subtree_control" 2>/dev/null || continue ;;
        */cgroup:*) continue ;;
    esac
    if mkdir "$d/ftpbench-compare-$$" 2>/dev/null; then CG_BASES+=" $d/ftpbench-compare-$$"; fi
done
case "$CG_BASES" in
    *cpuacct*|*/sys/fs/cgroup/ftpbench*) ;;
    *) log "no cgroup for CPU accounting: server CPU from /proc (whole ticks per process)" ;;
esac
case "$CG_BASES" in
    */cpu/*|*/sys/fs/cgroup/ftpbench*) ;;
    *) log "no cpu cgroup per server: servers that make a session per connection get one CPU share each (autogroup)" ;;
esac

# Moves the server's session (every process of it: pre-fork workers are up by now) into
# new cgroups; children forked later follow.
cgroup_enter() {
    CGROUP=
    local base cg p
    for base in $CG_BASES; do
        cg=$base/s$SPID
        mkdir "$cg" 2>/dev/null || continue
        for p in $(ps -o pid= -s "$SPID" 2>/dev/null); do echo "$p" >"$cg/cgroup.procs" 2>/dev/null || true; done
        if [ -z "$CGROUP" ] && { [ -f "$cg/cpuacct.usage" ] || grep -qs '^usage_usec' "$cg/cpu.stat"; }; then
            CGROUP=$cg
        fi
    done
}

# Removes the cgroups of the server that was pid $1 (once its last process is gone).
cgroup_leave() {
    local base _
    for base in $CG_BASES; do
        [ -d "$base/s${1:-x}" ] || continue
        for _ in $(seq 20); do rmdir "$base/s$1" 2>/dev/null && break; sleep 0.1; done
    done
    CGROUP=
}

# start_ftpdlib NAME PORT CERT LOG: ftpdlib's CLI in the model NAME names (ftpdlib-MODEL:
# this tree's build; base-MODEL: the --baseline binary).
start_ftpdlib() {
    local model=${1#*-} port=$2 cert=$3 logf=$4 tls=() bin=$FTPDLIB extra=()
    case "$1" in base-*) bin=$BASELINE ;; esac
    # NAME-metrics: the same model with the Prometheus endpoint on (what it costs).
    case "$model" in
        *-metrics) model=${model%-metrics}; extra=(--metrics 127.0.0.1:0) ;;
    esac
    [ -x "$bin" ] || { log "$1: $bin missing: skipped"; return 1; }
    [ -z "$cert" ] || tls=(--tls --certfile "$CERTDIR/$cert.crt" --keyfile "$CERTDIR/$cert.key")
    # shellcheck disable=SC2046,SC2086
    setsid "$bin" -i 127.0.0.1 -p "$port" -d "$DIR" -w -u "$BENCH_USER" -P "$BENCH_PASS" \
        --concurrency "$model" $(max_cons_flag "$bin") "${tls[@]}" "${extra[@]}" $SERVER_EXTRA >"$logf" 2>&1 &
}

# start_pyftpdlib NAME PORT CERT LOG: pyftpdlib's CLI for the async and pre-fork models
# without TLS; otherwise a small script with the CLI's settings (-w = "elradfmwMT") that
# picks the server class, and TLS_FTPHandler (pyOpenSSL) for FTPS. pyftpdlib 2.2's CLI
# crashes for multi-thread and multi-proc (it passes worker_processes= to their
# serve_forever) and has no TLS flags.
start_pyftpdlib() {
    local name=$1 port=$2 cert=$3 logf=$4 model=async
    [ -n "$PY" ] || { log "$name: pyftpdlib unavailable: skipped"; return 1; }
    [ "$name" = pyftpdlib ] || model=${name#pyftpdlib-}
    if [ -z "$cert" ] && { [ "$model" = async ] || [ "$model" = pre-fork ]; } &&
        PYTHONPATH=$PYPATH timeout 10 "$PY" -m pyftpdlib --help 2>&1 | grep -q -- '--concurrency'; then
        # shellcheck disable=SC2046
        PYTHONPATH=$PYPATH setsid "$PY" -m pyftpdlib -i 127.0.0.1 -p "$port" -d "$DIR" -w \
            -u "$BENCH_USER" -P "$BENCH_PASS" --concurrency "$model" \
            $(PYTHONPATH=$PYPATH max_cons_flag "$PY" -m pyftpdlib) >"$logf" 2>&1 &
        return 0
    fi
    local cls=FTPServer crt= key=
    case "$model" in multi-thread) cls=ThreadedFTPServer ;; multi-proc) cls=MultiprocessFTPServer ;; esac
    [ "$model" != pre-fork ] || log "$name: the pre-fork model needs pyftpdlib's CLI; running $cls"
    [ -z "$cert" ] || { crt=$CERTDIR/$cert.crt; key=$CERTDIR/$cert.key; }
    PYTHONPATH=$PYPATH setsid "$PY" - "$port" "$DIR" "$BENCH_USER" "$BENCH_PASS" "$cls" \
        "$SERVER_MAXC" "$crt" "$key" >"$logf" 2>&1 <<'EOF' &
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
import pyftpdlib.servers as servers
port, root, user, pw, cls, maxc, crt, key = sys.argv[1:9]
auth = DummyAuthorizer()
auth.add_user(user, pw, root, perm="elradfmwMT")
handler = FTPHandler
if crt:
    # Explicit FTPS on request (AUTH TLS), as the other servers here are configured.
    from pyftpdlib.handlers import TLS_FTPHandler
    handler = TLS_FTPHandler
    handler.certfile = crt
    handler.keyfile = key
    handler.tls_control_required = False
    handler.tls_data_required = False
handler.authorizer = auth
server = getattr(servers, cls)(("127.0.0.1", int(port)), handler)
server.max_cons = int(maxc)
server.max_cons_per_ip = int(maxc)
server.serve_forever()
EOF
}

stop_server() {
    [ -n "$SPID" ] || return 0
    # The server's own process group (setsid), so forked session processes go too.
    kill -TERM -- "-$SPID" 2>/dev/null || kill -TERM "$SPID" 2>/dev/null || true
    local _
    for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    cgroup_leave "$SPID"
    SPID=
}

# --- peers -----------------------------------------------------------------------------------
case " $SERVERS " in *" pyftpdlib"*) setup_pyftpdlib || log "pyftpdlib could not be installed" ;; esac
case " $SERVERS " in *" vsftpd "*) setup_vsftpd || { log "vsftpd could not be set up"; rm -f "$WORK/vsftpd.conf"; } ;; esac
case " $SERVERS " in *" proftpd "*) setup_proftpd || { log "proftpd could not be set up"; rm -f "$WORK/proftpd.conf"; } ;; esac
case " $SERVERS " in *" pure-ftpd "*) setup_pure_ftpd || { log "pure-ftpd could not be set up"; rm -f "$WORK/pureftpd.pdb"; } ;; esac

# --- the phases ------------------------------------------------------------------------------
# Every phase runs each server in turn (A B C ..., round after round), each on a fresh start
# and a free port, and writes ftpbench's CSV (key,value,unit,label) to results/SERVER/RUN.csv.
BENCH_ARGS=(-H 127.0.0.1 -u "$BENCH_USER" -p "$BENCH_PASS" --duration "$DURATION"
    --transfer-size "$TRANSFER" --csv)
# One loopback-limit sample (short: a 1 s window per figure), into results/loopback/$1.csv.
loopback_limit() {
    mkdir -p "$RES/loopback"
    local t
    t=$(python3 -c 'import sys; print(min(float(sys.argv[1]), 1.0))' "$DURATION")
    # Its file sits beside the served ones (TMPDIR), on the same filesystem.
    TMPDIR=$WORK timeout 60 "$FTPBENCH" --loopback-limit --csv --duration "$t" --transfer-size 256M \
        >"$RES/loopback/$1.csv" 2>>"$WORK/loopback.log" || log "loopback limit failed"
}

# bench NAME RUN ARGS...: ftpbench against the running server (pid $SPID, port $PORT) into
# results/NAME/RUN.csv; its human lines go to NAME.RUN.bench.log. Each phase may take
# $BENCH_PHASE_LIMIT (default --phase-limit) seconds.
bench() {
    local name=$1 run=$2
    shift 2
    mkdir -p "$RES/$name"
    TMPDIR=$WORK timeout 300 "$FTPBENCH" "${BENCH_ARGS[@]}" -P "$PORT" -k "$SPID" \
        --phase-limit "${BENCH_PHASE_LIMIT:-$PHASE_LIMIT}" ${CGROUP:+--cgroup "$CGROUP"} "$@" \
        >"$RES/$name/$run.csv" 2>"$WORK/$name.$run.bench.log" ||
        log "$name: ftpbench reported failures (see $name.$run.bench.log): $(grep -m1 '^ftpbench:' "$WORK/$name.$run.bench.log" || true)"
}

# budget_left: false (and says so once) when --budget is spent.
budget_left() {
    if [ $((SECONDS - START)) -gt "$BUDGET" ]; then
        [ -n "${BUDGET_SAID:-}" ] || log "time budget (${BUDGET}s) spent: no more runs"
        BUDGET_SAID=1
        return 1
    fi
}

# up NAME [CERT]: settles TCP memory, starts NAME on a free port (PORT, SPID); false when it
# cannot start.
up() {
    budget_left || return 1
    settle_tcp_memory
    PORT=$(free_port)
    start_server "$1" "$PORT" "${2:-}"
}

# The plain-FTP phase: transfers, listings, logins, 1,000 clients; then 8 KiB client I/O and
# the second concurrence load on the same server start.
phase_plain() {
    local s=$1 round=$2
    [ -z "${SKIP[$s]:-}" ] || return 0
    up "$s" || { SKIP[$s]=1; return 0; }
    # The loopback limit right before and right after each run (the load of a shared machine
    # drifts), so each run is judged against its own limit.
    loopback_limit "$round-$s-before"
    log "round $round: $s (pid $SPID, port $PORT)"
    local t0=$SECONDS
    bench "$s" "$round" -b "$PLAIN_BENCH" -n "$CLIENTS" -s "$SIZE" --list-files "$LIST_FILES" --list-reps "$LIST_REPS"
    loopback_limit "$round-$s-after"
    if [ "$SMALL_IO" = 1 ]; then
        bench "$s" "$round.8k" -b stor,retr --buffer 8K --key-suffix _8k
    fi
    if [ -n "$SECOND_LOAD" ]; then
        bench "$s" "$round.second" -b concurrence -n "${SECOND_LOAD%%:*}" -s "${SECOND_LOAD#*:}" \
            --key-suffix "_${SECOND_LOAD%%:*}"
    fi
    log "round $round: $s took $((SECONDS - t0)) s"
    stop_server
}

# The FTPS phase: with each certificate, ftpbench -b ftps (STOR, RETR, sequential and
# concurrent logins).
phase_ftps() {
    local s=$1 round=$2 cert
    for cert in $CERTS; do
        [ -z "${SKIP_TLS[$s]:-}" ] || return 0
        up "$s" "$cert" || { SKIP_TLS[$s]=1; return 0; }
        log "round $round: $s FTPS, $cert certificate (pid $SPID, port $PORT)"
        bench "$s" "$round.ftps-$cert" -b ftps --tls-clients "$TLS_CLIENTS" --key-suffix "_$cert"
        stop_server
    done
}

# Waits (at most 70 s, a little over Linux's 60 s TIME_WAIT) until fewer than 2,000 loopback
# connections are in TIME_WAIT: the previous server's 10,000 listings leave theirs on ports of
# the same ephemeral range the next server's passive listeners and ftpbench's connections
# take, and a server then refuses PASV with 425 for want of a port, not for a fault of its own.
drain_time_wait() {
    command -v ss >/dev/null 2>&1 || return 0
    local n waited=0
    while n=$(ss -Htan state time-wait 2>/dev/null | wc -l) && [ "$n" -ge 2000 ] && [ "$waited" -lt 70 ]; do
        [ "$waited" = 0 ] && log "waiting for $n TIME_WAIT connections to drain"
        sleep 2; waited=$((waited + 2))
    done
}

# The many-sessions phase: --sessions steps of logged-in sessions held at once, a LIST from
# each, for the servers of --session-servers.
phase_sessions() {
    local s=$1 round=$2
    [ -z "${SKIP[$s]:-}" ] || return 0
    drain_time_wait
    SERVER_MAXC=$((MAX_SESSIONS * 2 + 100))
    if up "$s"; then
        log "round $round: $s, $SESSIONS sessions (pid $SPID, port $PORT)"
        BENCH_PHASE_LIMIT=120 bench "$s" "$round.sessions" -b sessions --sessions "$SESSIONS" \
            --conn-threads 32
        stop_server
    fi
    SERVER_MAXC=$MAXC
}

# The A/B login phase: ftpdlib (model $AB_MODEL) without and with $FTPDLIB_EXTRA_FLAGS_B,
# sequential logins and --clients connect+login; the order alternates between rounds.
phase_ab() {
    local round=$1 side order="a b"
    [ $((round % 2)) = 0 ] && order="b a"
    for side in $order; do
        SERVER_EXTRA=
        [ "$side" = a ] || SERVER_EXTRA=$EXTRA_B
        if up "ftpdlib-$AB_MODEL"; then
            log "round $round: A/B login phase, side $side${SERVER_EXTRA:+ ($SERVER_EXTRA)}"
            bench "ab-$side" "$round" -b logins
            stop_server
        fi
    done
    SERVER_EXTRA=
}

SERVER_EXTRA=
log "work dir $WORK; output $OUT_DIR; servers: $SERVERS; $ROUNDS round(s), $CLIENTS clients, $SIZE files"
START=$SECONDS
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A SKIP=() SKIP_TLS=()
for round in $(seq "$ROUNDS"); do
    for s in $SERVERS; do phase_plain "$s" "$round"; done
    if [ "$FTPS" = 1 ]; then
        for s in $SERVERS; do phase_ftps "$s" "$round"; done
    fi
    if [ "$MAX_SESSIONS" -gt 0 ]; then
        for s in $SESSION_SERVERS; do
            case " $SERVERS " in *" $s "*) phase_sessions "$s" "$round" ;; esac
        done
    fi
    if [ -n "$EXTRA_B" ]; then phase_ab "$round"; fi
done

[ -n "$(ls -A "$RES/loopback" 2>/dev/null)" ] || loopback_limit 1-none

# curl's FTPS first byte per server (issue: clients that wait for the data handshake), from
# its own script, which starts each server the way curl needs: once, after the rounds.
if [ "$FTPS" = 1 ] && [ "$FIRST_BYTE" = 1 ]; then
    fb_servers=""
    case " $SERVERS " in *" ftpdlib-"*) fb_servers="ftpdlib" ;; esac
    for s in pyftpdlib vsftpd proftpd pure-ftpd; do
        case " $SERVERS " in *" $s "*) fb_servers+=" $s" ;; esac
    done
    log "curl's FTPS first byte: $fb_servers"
    if ! "$ROOT/scripts/ftps_first_byte.sh" --ftpdlib "$FTPDLIB" --servers "$fb_servers" \
        --runs "$([ "$QUICK" = 1 ] && echo 5 || echo 9)" --rounds 1 \
        >"$WORK/first_byte.md" 2>"$WORK/first_byte.log"; then
        log "ftps_first_byte.sh failed: $(tail -n 1 "$WORK/first_byte.log")"
        : >"$WORK/first_byte.md"
    fi
fi

# --- the report --------------------------------------------------------------------------------
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
machine="$(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)"
versions="pyftpdlib $(PYTHONPATH=$PYPATH ${PY:-python3} -c 'import pyftpdlib; print(pyftpdlib.__ver__)' 2>/dev/null || echo '?'),"
versions+=" vsftpd $(dpkg-query -W -f '${Version}' vsftpd 2>/dev/null || echo '?'),"
versions+=" proftpd $(cat "$WORK/proftpd-core.version" 2>/dev/null || echo '?'),"
versions+=" pure-ftpd $(cat "$WORK/pure-ftpd.version" 2>/dev/null || echo '?'),"
versions+=" ftpdlib $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')."
versions+=" Load average before/after: $LOAD_BEFORE / $LOAD_AFTER"
settings="Medians of $ROUNDS round(s); $CLIENTS clients, $SIZE files${SECOND_LOAD:+, then ${SECOND_LOAD%%:*} clients with ${SECOND_LOAD#*:} files}; one-client files $TRANSFER; FTPS with $TLS_CLIENTS concurrent logins, certificates: $CERTS; sessions: ${SESSIONS:-none}."
[ -z "$BASELINE" ] || settings+=" base-MODEL: the --baseline build $(basename "$BASELINE")."
[ -z "$EXTRA_B" ] || settings+=" A/B login phase: ftpdlib $AB_MODEL, B with \`$EXTRA_B\`."
rm -rf "$OUT_DIR/raw" && cp -r "$RES" "$OUT_DIR/raw"
python3 "$ROOT/scripts/compare-report.py" --results "$RES" --out-dir "$OUT_DIR" \
    --servers "$SERVERS" --machine "$machine" --versions "$versions" --settings "$settings" \
    --clients "$CLIENTS" --size "$SIZE" --second-load "$SECOND_LOAD" --certs "$CERTS" --sessions "$SESSIONS"
if [ -s "$WORK/first_byte.md" ]; then
    cp "$WORK/first_byte.md" "$OUT_DIR/first_byte.md"
    { echo; echo "### curl's FTPS first byte"; cat "$WORK/first_byte.md"; } >>"$OUT_DIR/table.md"
fi
cat "$OUT_DIR/table.md"
if [ -n "$OUT" ]; then cp "$OUT_DIR/table.md" "$OUT"; log "tables written to $OUT"; fi
log "tables, charts and raw CSV in $OUT_DIR"
log "done in $((SECONDS - START)) s"
