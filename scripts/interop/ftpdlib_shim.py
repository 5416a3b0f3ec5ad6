"""pytest plugin: run pyftpdlib 2.2's functional test suite (tests/test_functional.py) against
ftpdlib instead of pyftpdlib's in-process server.

Every test class's ``server_class`` (``FtpdThreadWrapper``) is replaced by ``FtpdlibServer``,
which starts ``$FTPDLIB_SUITE_SERVER`` (the ``pyftpdlib_suite_server`` example: user
``user``/``12345`` with ``elradfmwMT`` plus anonymous, pyftpdlib's test settings) serving the
test's HOME. The handler attributes a test patches before ``start()`` (timeouts, banner,
masquerade address, passive ports, ...) are read at ``start()`` and passed as ``name=value``
arguments. Tests that reach into pyftpdlib's internals are skipped with the reason (SKIPS).

Loaded by scripts/interop/pyftpdlib_suite.sh with ``-p ftpdlib_shim``.
"""

import os
import select
import signal
import subprocess
import time
import types

import pytest

SERVER = os.environ.get("FTPDLIB_SUITE_SERVER", "")
LOG = os.environ.get("FTPDLIB_SUITE_LOG", os.devnull)
# pool (default) or multi-thread, as the binary's --concurrency
CONCURRENCY = os.environ.get("FTPDLIB_SUITE_CONCURRENCY", "pool")

INTERNALS = "inspects or patches pyftpdlib internals"

# test node id suffix ("Class::test" or "Class") -> reason
SKIPS = {
    # in-process hooks the suite patches into pyftpdlib's own objects
    "TestCallbacks": INTERNALS + " (FTPHandler subclass with on_* callbacks)",
    "TestThrottleBandwidth": INTERNALS
    + " (ThrottledDTPHandler subclass driving its throttler callback)",
    "TestFtpListingCmds::test_unforeseen_time_event": INTERNALS
    + " (patches AbstractedFS.getmtime)",
    "TestCornerCases::test_error_on_callback": INTERNALS + " (IOLoop.call_later)",
    "TestCornerCases::test_repr": INTERNALS + " (IOLoop.socket_map)",
    "TestCornerCases::test_ioloop_fileno": INTERNALS + " (server.ioloop)",
    "ThreadedFTPTests::test_stou_max_tries": INTERNALS + " (AbstractedFS.mkstemp)",
    "ThreadedFTPTests::test_permit_foreign_address_false": INTERNALS
    + " (sets the live handler's remote_ip)",
    "ThreadedFTPTests::test_permit_foreign_address_true": INTERNALS
    + " (sets the live handler's remote_ip)",
    "ThreadedFTPTests::test_sendfile_fails": INTERNALS + " (patches os.sendfile)",
    # deliberate differences
    "TestConfigurableOptions::test_masquerade_address": "ftpdlib types "
    "masquerade_address as an IPv4 address; the test uses the invalid 256.256.256.256",
    "TestConfigurableOptions::test_max_connections": "max_cons counts sessions in "
    "ftpdlib; pyftpdlib counts every socket of its IO loop (the listener and data "
    "channels too), so max_cons=3 admits 2 clients there and 3 here",
    "TestConfigurableOptions::test_passive_ports": "ftpdlib's passive_ports is a "
    "contiguous range; the test uses range(40000, 60000, 200) (every 200th port)",
    "TestConfigurableOptions::test_passive_ports_busy": "ftpdlib never leaves the "
    "passive range (a firewall opened for it would drop the connection): a busy range gets "
    "425, where pyftpdlib falls back to a kernel-chosen port",
}


# every server started, so none outlives the run (a test failing in tearDown never stops its)
_STARTED = []


def _default(cls, name, value):
    return getattr(cls, name, value)


class FtpdlibServer:
    """Stands in for tests.FtpdThreadWrapper: same attributes (handler, server, host, port,
    start, stop), backed by an ftpdlib process."""

    def __init__(self, addr=None):
        from pyftpdlib.handlers import DTPHandler  # noqa: PLC0415
        from pyftpdlib.handlers import FTPHandler  # noqa: PLC0415

        from tests import HOST  # noqa: PLC0415

        self.addr = addr if addr is not None else (HOST, 0)
        # private subclasses: a test patches these, never pyftpdlib's classes
        self.handler = type("FTPHandler", (FTPHandler,), {})
        self.handler.dtp_handler = type("DTPHandler", (DTPHandler,), {})
        self.handler.passive_dtp = type("PassiveDTP", (FTPHandler.passive_dtp,), {})
        self.handler.active_dtp = type("ActiveDTP", (FTPHandler.active_dtp,), {})
        self.server = types.SimpleNamespace(
            max_cons=0, max_cons_per_ip=0, handler=self.handler
        )
        self.host, self.port = self.addr[0], None
        self.proc = None

    def _settings(self):
        h = self.handler
        s = {}
        s["timeout"] = h.timeout or 0
        s["data_timeout"] = h.dtp_handler.timeout or 0
        s["passive_accept_timeout"] = h.passive_dtp.timeout or 0
        s["banner"] = h.banner
        s["max_login_attempts"] = h.max_login_attempts
        s["auth_failed_timeout"] = h.auth_failed_timeout
        if h.masquerade_address:
            s["masquerade_address"] = h.masquerade_address
        if h.masquerade_address_map:
            s["masquerade_address_map"] = ",".join(
                f"{k}>{v}" for k, v in h.masquerade_address_map.items()
            )
        if h.passive_ports:
            ports = sorted(h.passive_ports)
            s["passive_ports"] = f"{ports[0]}-{ports[-1]}"
        s["permit_foreign_addresses"] = int(bool(h.permit_foreign_addresses))
        s["permit_privileged_ports"] = int(bool(h.permit_privileged_ports))
        s["use_gmt_times"] = int(bool(h.use_gmt_times))
        s["use_sendfile"] = int(bool(h.use_sendfile))
        s["encoding"] = h.encoding
        s["read_limit"] = int(_default(h.dtp_handler, "read_limit", 0))
        s["write_limit"] = int(_default(h.dtp_handler, "write_limit", 0))
        s["max_cons"] = self.server.max_cons
        s["max_cons_per_ip"] = self.server.max_cons_per_ip
        s["concurrency"] = CONCURRENCY
        return s

    def start(self):
        from tests import HOME  # noqa: PLC0415

        host = self.addr[0]
        bind = f"[{host}]:{self.addr[1]}" if ":" in host else f"{host}:{self.addr[1]}"
        args = [SERVER, HOME, bind] + [f"{k}={v}" for k, v in self._settings().items()]
        log = open(LOG, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log)
        _STARTED.append(self)
        log.close()
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"ftpdlib did not start: {args!r} -> {line!r}")
        self.port = int(line.split()[1])
        self.host = host

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc = None

    # FtpdThreadWrapper is a Thread; a few tests call these
    def join(self, timeout=None):
        pass

    def is_alive(self):
        return self.proc is not None and self.proc.poll() is None


def pytest_configure(config):
    if not SERVER or not os.access(SERVER, os.X_OK):
        raise pytest.UsageError("FTPDLIB_SUITE_SERVER must name the server binary")


def pytest_sessionfinish(session, exitstatus):
    for server in _STARTED:
        server.stop()


def pytest_collection_modifyitems(session, config, items):
    import tests  # noqa: PLC0415

    wrappers = {tests.FtpdThreadWrapper, getattr(tests, "FtpdMultiprocWrapper", None)}
    for item in items:
        cls = getattr(item, "cls", None)
        if cls is not None and getattr(cls, "server_class", None) in wrappers:
            cls.server_class = FtpdlibServer
        name = item.nodeid.split("::", 1)[-1]
        for key, reason in SKIPS.items():
            if name == key or name.startswith(key + "::"):
                item.add_marker(pytest.mark.skip(reason=reason))
        if cls is not None and cls.__name__ not in {
            k.split("::")[0] for k in SKIPS
        } and getattr(cls, "server_class", None) is not FtpdlibServer:
            item.add_marker(pytest.mark.skip(reason="not a network test"))
