#!/usr/bin/env bash
# ftps_first_byte.sh: curl over FTPS (explicit AUTH TLS, PROT P, TLS 1.3, one ECDSA P-256
# certificate for every server) against ftpdlib's release build and, when they can be set
# up, pyftpdlib, vsftpd, proftpd and pure-ftpd, on 127.0.0.1 only. Prints a markdown table
# of medians:
#   first byte   curl's time from its start to the first data byte of one small file
#                (-w %{time_starttransfer}), one curl per run;
#   later files  the same for the 2nd and 3rd file of one curl command (later data
#                connections of the same session, which must resume its TLS session);
#   50 x 20M     wall time of 50 concurrent curl downloads of one 20 MiB file.
#
#   scripts/ftps_first_byte.sh                    # 15 runs, 3 rounds of 50 x 20 MiB
#   scripts/ftps_first_byte.sh --runs 5 --rounds 1 --servers "ftpdlib pyftpdlib"
#   scripts/ftps_first_byte.sh --ftpdlib /path/to/ftpdlib   # another build, no cargo
#
# Installs what is missing, only when run as root: pyftpdlib and pyOpenSSL with pip (a cached
# venv), vsftpd with apt-get, proftpd (with mod_tls) and pure-ftpd unpacked from their Debian
# packages (apt-get download, dpkg-deb -x) into a cache, as scripts/compare.sh does. The
# system servers log in a local user `ftpbench` (root only). Every server runs in the
# foreground on a free port, is stopped by its process group when its rows are done, and on
# exit or Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
USER_NAME=ftpbench
USER_PASS=ftpbench-pass
RUNS=15
ROUNDS=3
CLIENTS=50
SIZE_MIB=20
SERVERS="ftpdlib pyftpdlib vsftpd proftpd pure-ftpd"
FTPDLIB=
PEERS=${FTPBENCH_PEERS:-/tmp/ftpbench-peers}
VENV=${FTPBENCH_TLS_VENV:-/tmp/ftpbench-tls-venv}

while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --size-mib) SIZE_MIB=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --ftpdlib) FTPDLIB=$2; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

log() { echo "[ftps_first_byte] $*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }
apt_install() {
    is_root || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; }
}
for t in curl openssl python3; do
    command -v "$t" >/dev/null 2>&1 || apt_install "$t" || { log "$t is needed"; exit 1; }
done

WORK=$(mktemp -d /tmp/ftps-first-byte.XXXXXX)
chmod 755 "$WORK"
DIR=$WORK/root
mkdir -p "$DIR"
SPID=
stop_server() {
    [ -n "$SPID" ] || return 0
    kill -TERM -- "-$SPID" 2>/dev/null || kill -TERM "$SPID" 2>/dev/null || true
    local _
    for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- files, certificate, user ----------------------------------------------------------------
printf 'first\n' >"$DIR/a.txt"
printf 'second\n' >"$DIR/b.txt"
printf 'third\n' >"$DIR/c.txt"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$DIR/big.bin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/key.pem" "$WORK/cert.pem" >"$WORK/both.pem"
chmod 644 "$WORK"/*.pem
if is_root; then
    id "$USER_NAME" >/dev/null 2>&1 ||
        useradd --system --no-create-home --home-dir / --shell /bin/bash "$USER_NAME"
    echo "$USER_NAME:$USER_PASS" | chpasswd
    chown -R "$USER_NAME" "$DIR"
fi

# --- peers -----------------------------------------------------------------------------------
PY=
setup_pyftpdlib() {
    if python3 -c 'import pyftpdlib, OpenSSL' 2>/dev/null; then PY=python3; return 0; fi
    if ! "$VENV/bin/python" -c 'import pyftpdlib, OpenSSL' 2>/dev/null; then
        is_root || return 1
        log "installing pyftpdlib and pyOpenSSL into $VENV"
        { python3 -m venv "$VENV" || { apt_install python3-venv && python3 -m venv "$VENV"; }; } >/dev/null 2>&1 &&
            "$VENV/bin/pip" install -q pyftpdlib pyopenssl >/dev/null 2>&1 || return 1
    fi
    PY=$VENV/bin/python
}

# deb_binary PKG: unpacks Debian package PKG into $PEERS/PKG (apt-get download), installing
# only the shared libraries it lacks; prints the directory. Not `apt-get install`: the FTP
# servers conflict with one another and would start a daemon on port 21.
deb_dir() {
    local pkg=$1 dest=$PEERS/$1 deb
    if [ ! -d "$dest/usr" ]; then
        is_root || return 1
        log "fetching $pkg into $dest"
        mkdir -p "$PEERS/deb"
        rm -f "$PEERS/deb/${pkg}_"*.deb
        (cd "$PEERS/deb" && { apt-get download -q "$pkg" >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get download -q "$pkg" >/dev/null 2>&1; }; }) || return 1
        deb=$(ls "$PEERS/deb/${pkg}_"*.deb | head -n1)
        rm -rf "$dest" && mkdir -p "$dest" && dpkg-deb -x "$deb" "$dest" || return 1
        dpkg-deb -f "$deb" Version >"$dest.version"
        dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' |
            grep '^lib' >"$dest.libs" || true
    fi
    local lib missing=()
    while read -r lib; do
        dpkg-query -W -f '${Status}' "$lib" 2>/dev/null | grep -q 'ok installed' || missing+=("$lib")
    done <"$dest.libs"
    [ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}" || return 1
    echo "$dest"
}

setup_peer() {
    case "$1" in
        ftpdlib)
            if [ -z "$FTPDLIB" ]; then
                log "building ftpdlib (cargo build --release --bin ftpdlib)"
                (cd "$ROOT" && cargo build --release --quiet --bin ftpdlib) || return 1
                FTPDLIB=$ROOT/target/release/ftpdlib
            fi
            [ -x "$FTPDLIB" ] ;;
        pyftpdlib) setup_pyftpdlib ;;
        vsftpd)
            is_root || return 1
            command -v vsftpd >/dev/null 2>&1 || [ -x /usr/sbin/vsftpd ] || apt_install vsftpd || return 1
            mkdir -p /var/run/vsftpd/empty ;;
        proftpd)
            is_root || return 1
            PROFTPD_DIR=$(deb_dir proftpd-core) && PROFTPD_TLS=$(deb_dir proftpd-mod-crypto) ;;
        pure-ftpd)
            is_root || return 1
            PUREFTPD_DIR=$(deb_dir pure-ftpd) || return 1
            # Its own user file: the local user chrooted at $DIR (crypt(3) hash from shadow).
            echo "$USER_NAME:$(getent shadow "$USER_NAME" | cut -d: -f2):$(id -u "$USER_NAME"):$(id -g "$USER_NAME")::$DIR/./::::::::::::" \
                >"$WORK/pure.passwd"
            "$PUREFTPD_DIR/usr/bin/pure-pw" mkdb "$WORK/pure.pdb" -f "$WORK/pure.passwd" >/dev/null ;;
        *) return 1 ;;
    esac
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME PORT: the server in its own process group (SPID); 0 once it greets.
start() {
    local name=$1 port=$2 logf=$WORK/$1.log
    case "$name" in
        ftpdlib)
            setsid "$FTPDLIB" -i 127.0.0.1 -p "$port" -d "$DIR" -u "$USER_NAME" -P "$USER_PASS" \
                --tls --certfile "$WORK/cert.pem" --keyfile "$WORK/key.pem" >"$logf" 2>&1 & ;;
        pyftpdlib)
            setsid "$PY" - "$port" "$DIR" "$USER_NAME" "$USER_PASS" "$WORK" >"$logf" 2>&1 <<'EOF' &
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
from pyftpdlib.servers import FTPServer
port, root, user, pw, work = sys.argv[1:6]
auth = DummyAuthorizer()
auth.add_user(user, pw, root, perm="elr")
TLS_FTPHandler.authorizer = auth
TLS_FTPHandler.certfile = work + "/cert.pem"
TLS_FTPHandler.keyfile = work + "/key.pem"
FTPServer(("127.0.0.1", int(port)), TLS_FTPHandler).serve_forever()
EOF
            ;;
        vsftpd)
            cat >"$WORK/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$port
background=NO
anonymous_enable=NO
local_enable=YES
local_root=$DIR
chroot_local_user=YES
allow_writeable_chroot=YES
pasv_address=127.0.0.1
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
max_clients=0
max_per_ip=0
xferlog_enable=NO
secure_chroot_dir=/var/run/vsftpd/empty
pam_service_name=vsftpd
ssl_enable=YES
rsa_cert_file=$WORK/cert.pem
rsa_private_key_file=$WORK/key.pem
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse=YES
ssl_ciphers=HIGH
EOF
            setsid "$(command -v vsftpd || echo /usr/sbin/vsftpd)" "$WORK/vsftpd.conf" >"$logf" 2>&1 & ;;
        proftpd)
            cat >"$WORK/proftpd.conf" <<EOF
ServerType standalone
UseIPv6 off
DefaultAddress 127.0.0.1
SocketBindTight on
Port $port
User $USER_NAME
Group $(id -gn "$USER_NAME")
MaxInstances 500
ScoreboardFile /dev/null
PidFile $WORK/proftpd.pid
UseReverseDNS off
WtmpLog off
TransferLog none
AllowOverride off
DefaultRoot $DIR
<IfModule mod_ident.c>
  IdentLookups off
</IfModule>
<IfModule mod_delay.c>
  DelayEngine off
</IfModule>
<IfModule mod_auth_pam.c>
  AuthPAM off
</IfModule>
AuthOrder mod_auth_unix.c
RequireValidShell off
ModulePath $PROFTPD_TLS/usr/lib/proftpd
LoadModule mod_tls.c
<IfModule mod_tls.c>
  TLSEngine on
  TLSProtocol TLSv1.2 TLSv1.3
  TLSECCertificateFile $WORK/cert.pem
  TLSECCertificateKeyFile $WORK/key.pem
  TLSRequired on
  TLSVerifyClient off
</IfModule>
EOF
            setsid "$PROFTPD_DIR/usr/sbin/proftpd" -n -c "$WORK/proftpd.conf" >"$logf" 2>&1 & ;;
        pure-ftpd)
            # -Y 2: TLS required on the control connection; -2: certificate and key files.
            setsid "$PUREFTPD_DIR/usr/sbin/pure-ftpd" -S "127.0.0.1,$port" -4 -A -E -H -c 500 -C 500 \
                -Y 2 -2 "$WORK/cert.pem,$WORK/key.pem" -l "puredb:$WORK/pure.pdb" >"$logf" 2>&1 & ;;
    esac
    SPID=$!
    local _
    for _ in $(seq 50); do
        kill -0 "$SPID" 2>/dev/null || break
        if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && head -c 3 <&3" 2>/dev/null | grep -q 220; then
            return 0
        fi
        sleep 0.2
    done
    log "$name did not start; its log:"; tail -n 5 "$logf" >&2 || true
    stop_server
    return 1
}

median() { python3 -c 'import statistics, sys
v = [float(x) for x in sys.stdin.read().split()]
print("%.2f" % statistics.median(v) if v else "-")'; }
# "exit-code seconds" lines: "median (max), k failed".
times() { python3 -c 'import statistics, sys
rows = [l.split() for l in sys.stdin if l.strip()]
ok = [float(t) for c, t in rows if c == "0"]
bad = len(rows) - len(ok)
s = "%.3f (max %.2f)" % (statistics.median(ok), max(ok)) if ok else "-"
print(s + (", %d of %d failed" % (bad, len(rows)) if bad else ""))'; }

CURL=(curl -s -S -k --ssl-reqd --tlsv1.3 --max-time 120 -u "$USER_NAME:$USER_PASS")

# measure NAME PORT: one table row.
measure() {
    local name=$1 port=$2 url=ftp://127.0.0.1:$2 first=$WORK/first later=$WORK/later wall=$WORK/wall i
    : >"$first"; : >"$later"; : >"$wall"
    # -w prints "exit-code time" after each file; failed transfers are counted, not timed.
    for i in $(seq "$RUNS"); do
        "${CURL[@]}" -o /dev/null -w '%{exitcode} %{time_starttransfer}\n' "$url/a.txt" \
            2>/dev/null >>"$first" || true
        # The 2nd and 3rd files are later data connections of the same session.
        "${CURL[@]}" -o /dev/null -o /dev/null -o /dev/null -w '%{exitcode} %{time_starttransfer}\n' \
            "$url/a.txt" "$url/b.txt" "$url/c.txt" 2>/dev/null | sed -n '2,3p' >>"$later" || true
    done
    for i in $(seq "$ROUNDS"); do
        local t0 t1 ok=0 pids=() p
        t0=$(date +%s.%N)
        for p in $(seq "$CLIENTS"); do
            "${CURL[@]}" -o /dev/null -w '%{size_download}\n' "$url/big.bin" >"$WORK/dl.$p" 2>&1 &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)) || true; done
        t1=$(date +%s.%N)
        local bytes
        bytes=$(cat "$WORK"/dl.* | grep -c "^$((SIZE_MIB << 20))\$" || true)
        if [ "$ok" = "$CLIENTS" ] && [ "$bytes" = "$CLIENTS" ]; then
            python3 -c "print($t1 - $t0)" >>"$wall"
        else
            log "$name: round $i: $ok of $CLIENTS curls succeeded, $bytes complete"
        fi
        rm -f "$WORK"/dl.*
    done
    printf '| %s | %s | %s | %s |\n' "$name" "$(times <"$first")" "$(times <"$later")" \
        "$(median <"$wall")"
}

ROWS=()
for name in $SERVERS; do
    if ! setup_peer "$name"; then log "$name could not be set up (needs root?): skipped"; continue; fi
    port=$(free_port)
    start "$name" "$port" || continue
    log "$name on 127.0.0.1:$port: $RUNS runs, $ROUNDS rounds of $CLIENTS x $SIZE_MIB MiB"
    ROWS+=("$(measure "$name" "$port")")
    stop_server
done

echo
echo "curl $(curl --version | head -n1 | cut -d' ' -f2) over FTPS (AUTH TLS, PROT P, TLS 1.3, ECDSA P-256), loopback, $(nproc) CPUs; medians (seconds)"
echo
echo "| server | first byte | 2nd/3rd file of one curl | $CLIENTS x $SIZE_MIB MiB wall |"
echo "|---|---|---|---|"
for r in "${ROWS[@]}"; do echo "$r"; done
