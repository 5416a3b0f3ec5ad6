#!/bin/sh
# Runs pyftpdlib 2.2.0's functional test suite (tests/test_functional.py) against ftpdlib.
#
#   scripts/interop/pyftpdlib_suite.sh [pytest args, e.g. -k TestFtpAbort]
#
# PYFTPDLIB_SRC: an unpacked pyftpdlib-2.2.0 source tree (with tests/); fetched from PyPI
# into /tmp when unset and not found. VENV: where pytest + psutil + pyftpdlib are installed
# (default /tmp/pyftpd-venv). FTPDLIB_SUITE_CONCURRENCY: pool (default) or multi-thread.
# The server log goes to $TMPDIR/ftpdlib-suite.log.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${VENV:-/tmp/pyftpd-venv}
SRC=${PYFTPDLIB_SRC:-/work/pyftpdlib-src/pyftpdlib-2.2.0}
if [ ! -x "$VENV/bin/pytest" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q pytest pytest-instafail pytest-xdist psutil pyopenssl pyftpdlib==2.2.0
fi
if [ ! -f "$SRC/tests/test_functional.py" ]; then
    SRC=/tmp/pyftpdlib-2.2.0
    if [ ! -f "$SRC/tests/test_functional.py" ]; then
        (cd /tmp && "$VENV/bin/pip" download -q --no-deps --no-binary :all: pyftpdlib==2.2.0 \
            && tar xzf pyftpdlib-2.2.0.tar.gz)
    fi
fi
(cd "$ROOT" && cargo build -q --example pyftpdlib_suite_server)
export FTPDLIB_SUITE_SERVER="$ROOT/target/debug/examples/pyftpdlib_suite_server"
export FTPDLIB_SUITE_LOG="${TMPDIR:-/tmp}/ftpdlib-suite.log"
export RUST_LOG=${RUST_LOG:-debug}
: > "$FTPDLIB_SUITE_LOG"
# The suite writes its files in the working directory (its HOME): use a scratch one.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
PYTHONPATH="$ROOT/scripts/interop" "$VENV/bin/pytest" -p ftpdlib_shim -p no:cacheprovider \
    --rootdir "$SRC" "$SRC/tests/test_functional.py" -q -rs "$@"
