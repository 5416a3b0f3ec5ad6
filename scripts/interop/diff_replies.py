"""Sends the same command sequences to pyftpdlib 2.2 and to ftpdlib (both serving a copy of
the same directory, user `user`/`12345` with `elradfmwMT` plus anonymous) and prints every
reply that differs. Replies are compared after masking ports, times and pids.

Usage: python3 diff_replies.py FTPDLIB_SUITE_SERVER [ENCODING]   (with the suite's venv python)
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

SEQUENCES = [
    ["USER user", "PASS 12345", "SYST", "NOOP", "HELP", "HELP RETR", "HELP XYZ", "SITE HELP",
     "SITE HELP CHMOD", "FEAT", "STAT", "PWD", "CWD sub", "PWD", "CDUP", "XPWD", "CWD /nope",
     "CWD ../../..", "PWD"],
    ["USER user", "PASS 12345", "TYPE A", "TYPE I", "TYPE L 8", "TYPE X", "MODE S", "MODE B",
     "MODE Z", "STRU F", "STRU P", "STRU Q", "ALLO 10", "REST 10", "REST x", "REST -1",
     "TYPE A", "REST 5"],
    ["USER user", "PASS 12345", "SIZE file.txt", "SIZE sub", "SIZE nope", "MDTM nope",
     "MDTM sub", "TYPE A", "SIZE file.txt", "MLST file.txt", "MLST sub", "MLST nope",
     "OPTS MLST type;size;", "MLST file.txt", "OPTS MLST", "MLST /", "OPTS UTF8 ON",
     "OPTS FOO", "OPTS"],
    ["USER user", "PASS 12345", "MKD newdir", "MKD newdir", "XMKD x2", "RMD x2", "XRMD nope",
     "RMD /", "RNFR nope", "RNTO x", "RNFR newdir", "RNTO renamed", "RNFR renamed",
     "RNTO /", "DELE nope", "DELE renamed", "RMD renamed", "MKD a\"b", "RMD a\"b",
     "SITE CHMOD 777 file.txt", "SITE CHMOD 9999 file.txt", "SITE CHMOD 755",
     "SITE CHMOD 755 nope", "MFMT 20200101000000 file.txt", "MFMT 2020 file.txt",
     "MFMT 20200101000000", "MDTM file.txt", "SITE FOO", "SITE"],
    ["USER anonymous", "PASS x", "STAT", "MKD d", "DELE file.txt", "RNFR file.txt",
     "SITE CHMOD 777 file.txt", "STOU", "APPE file.txt", "STOR new.txt", "MFMT 20200101000000 file.txt",
     "QUIT"],
    ["PASS x", "USER user", "USER user", "PASS bad", "PASS 12345", "PASS 12345", "USER other",
     "PWD", "REIN", "PWD", "ACCT x", "SMNT x", "FOO", "QUIT"],
    ["USER user", "PASS 12345", "PORT 127,0,0,1,1,1", "PORT 1,2,3,4,5,6", "PORT x",
     "EPRT |1|127.0.0.1|80|", "EPRT |9|x|1|", "EPSV 9", "EPSV 2", "ABOR", "STAT /", "STAT nope",
     "STAT *", "STAT sub", "STAT file.txt", "STOU", "RETR nope", "RETR sub",
     "EPSV ALL", "PASV", "PORT 127,0,0,1,4,4", "QUIT"],
    ["USER user", "PASS 12345", "LIST nope", "NLST nope", "MLSD nope", "MLSD file.txt",
     "RETR /../../etc/passwd", "CWD /../..", "SIZE ../../../etc/passwd", "QUIT"],
    ["USER user", "PASS bad", "PASS bad", "USER user", "PASS bad", "USER user", "PASS bad",
     "NOOP"],
    ["USER anonymous", "PASS", "PWD", "USER user", "PASS 12345", "QUIT"],
    ["noop", "NoOp", "NOOP ", " NOOP", "USER", "user  user", "PASS 12345", "pwd", "XPWD x",
     "CWD", "CWD ", "CWD file.txt", "CWD sub/", "CWD //", "CWD ~", "PWD", "CDUP", "CDUP",
     "PWD", "MKD sp ace", "CWD sp ace", "PWD", "CWD /", "RMD sp ace", "MKD ", "SIZE ",
     "MKD a/b/c", "RETR sub", "RETR", "STOR", "STOR sub", "APPE sub", "DELE sub",
     "RMD file.txt", "MDTM sub", "SIZE sub", "SITE CHMOD 7777 file.txt",
     "SITE CHMOD -1 file.txt", "SITE CHMOD 0644 file.txt", "SITE CHMOD 0o644 file.txt",
     "MFMT 20991231235959 file.txt", "MFMT 2020010100000 file.txt", "MFMT 20201301000000 file.txt",
     "TYPE I", "REST 100", "RETR file.txt", "REST 100", "STOR file.txt", "REST 0",
     "REST 5", "APPE file.txt", "REST 5", "STOU", "QUIT"],
    ["USER user", "PASS 12345", "PASV", "ABOR", "ABOR", "EPSV", "STAT", "PASV", "PASV",
     "STAT", "EPSV 1", "EPSV ALL", "EPSV", "EPRT |1|127.0.0.1|5555|", "QUIT"],
    ["USER user", "PASS 12345", "REIN", "STAT", "USER user", "STAT", "PASS 12345", "STAT",
     "TYPE I", "STAT", "REIN", "QUIT"],
    ["FEAT", "HELP", "HELP retr", "HELP site chmod", "SYST", "STAT", "SITE HELP",
     "SITE CHMOD 777 x", "OPTS UTF8 ON", "MLST", "AUTH TLS", "PBSZ 0", "PROT P", "CCC",
     "ALLO 1", "HELP FOO", "QUIT x", "QUIT"],
]

MASKS = [
    (re.compile(r"\(\d+,\d+,\d+,\d+,\d+,\d+\)"), "(PASV)"),
    (re.compile(r"\(\|\|\|\d+\|\)"), "(EPSV)"),
    (re.compile(r"\b\d{14}(\.\d+)?\b"), "TIME"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"modify=\d+;"), "modify=T;"),
    (re.compile(r"ftpd\.\S+"), "ftpd.X"),
    (re.compile(r"[A-Z][a-z]{2} [ \d]\d [ \d]\d:\d\d"), "DATE"),
    (re.compile(r"unix\.(uid|gid|mode)=\w+;"), ""),
    (re.compile(r"unique=\w+;"), "unique=U;"),
]


def transfers(port, encoding):
    """Listings and downloads over the data channel, through ftplib."""
    import ftplib  # noqa: PLC0415

    c = ftplib.FTP(timeout=5, encoding=encoding)
    c.connect("127.0.0.1", port)
    c.login("user", "12345")
    out = []

    def grab(label, cmd, binary=False):
        lines = []
        try:
            if binary:
                buf = []
                resp = c.retrbinary(cmd, buf.append)
                lines = [repr(b"".join(buf))]
            else:
                resp = c.retrlines(cmd, lines.append)
        except ftplib.Error as e:
            resp = str(e)
        except UnicodeEncodeError:
            resp = "<name not representable in the encoding>"
        out.append((label, mask(resp + "\n" + "\n".join(lines))))

    for cmd in ["LIST", "LIST -la", "LIST sub", "LIST file.txt", "LIST -a sub", "NLST",
                "NLST sub", "NLST -l", "MLSD", "MLSD sub", "RETR file.txt", "LIST empty",
                "NLST empty", "MLSD empty", "LIST link", "LIST outlink", "LIST dangling",
                "RETR link", "RETR outlink", "RETR dangling", "NLST file.txt",
                "MLSD link", "LIST /", "LIST ..", "LIST sp ace \u00e9\u4e2d.txt",
                "RETR sp ace \u00e9\u4e2d.txt", "RETR nope", "RETR sub", "LIST nope",
                "MLSD outlink"]:
        grab(cmd, cmd)
    c.voidcmd("TYPE A")
    grab("RETR file.txt (A, binary read)", "RETR file.txt", binary=True)
    c.voidcmd("TYPE I")
    grab("RETR crlf.txt (I)", "RETR crlf.txt", binary=True)
    c.voidcmd("TYPE A")
    grab("RETR crlf.txt (A)", "RETR crlf.txt", binary=True)
    c.voidcmd("TYPE I")
    c.sendcmd("REST 3")
    grab("REST 3 + RETR", "RETR file.txt", binary=True)
    for cmd in ["MLST link", "MLST outlink", "MLST dangling", "STAT /", "STAT link",
                "STAT outlink", "SIZE link", "SIZE outlink", "MDTM outlink", "CWD outlink",
                "DELE dangling", "MLST .hidden", "SIZE sp ace \u00e9\u4e2d.txt"]:
        try:
            r = c.sendcmd(cmd)
        except ftplib.Error as e:
            r = str(e)
        except UnicodeEncodeError:
            r = "<name not representable in the encoding>"
        out.append((cmd, mask(r)))
    c.quit()
    return out


def mask(s):
    for r, t in MASKS:
        s = r.sub(t, s)
    return s


def seed(d):
    with open(os.path.join(d, "file.txt"), "w") as f:
        f.write("hello\nworld\n")
    with open(os.path.join(d, "crlf.txt"), "wb") as f:
        f.write(b"a\r\nb\nc\rd\r\n")
    os.mkdir(os.path.join(d, "sub"))
    os.mkdir(os.path.join(d, "empty"))
    with open(os.path.join(d, ".hidden"), "w") as f:
        f.write("h")
    with open(os.path.join(d, "sp ace \u00e9\u4e2d.txt"), "w") as f:
        f.write("u")
    os.symlink("file.txt", os.path.join(d, "link"))
    os.symlink("/etc/passwd", os.path.join(d, "outlink"))
    os.symlink("nowhere", os.path.join(d, "dangling"))
    with open(os.path.join(d, "sub", "inner.txt"), "w") as f:
        f.write("x")


def session(port, cmds):
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    f = s.makefile("rb")
    out = []

    def reply():
        lines = []
        line = f.readline().decode("utf8", "replace")
        lines.append(line.rstrip("\r\n"))
        if len(line) > 3 and line[3] == "-":
            code = line[:3]
            while True:
                line = f.readline().decode("utf8", "replace")
                if not line:
                    break
                lines.append(line.rstrip("\r\n"))
                if line[:3] == code and line[3:4] == " ":
                    break
        return "\n".join(lines)

    try:
        reply()  # banner
        for c in cmds:
            s.sendall(c.encode() + b"\r\n")
            try:
                out.append((c, mask(reply())))
            except (socket.timeout, OSError):
                out.append((c, "<timeout/closed>"))
                break
    finally:
        s.close()
    return out


def main():
    rust = sys.argv[1]
    encoding = sys.argv[2] if len(sys.argv) > 2 else "utf8"
    base = tempfile.mkdtemp()
    d_py, d_rs = os.path.join(base, "py"), os.path.join(base, "rs")
    for d in (d_py, d_rs):
        os.mkdir(d)
        seed(d)
    auth = DummyAuthorizer()
    auth.add_user("user", "12345", d_py, perm="elradfmwMT")
    auth.add_anonymous(d_py)
    FTPHandler.authorizer = auth
    FTPHandler.auth_failed_timeout = 0.001
    FTPHandler.banner = "pyftpdlib ready."
    FTPHandler.encoding = encoding
    srv = FTPServer(("127.0.0.1", 0), FTPHandler)
    py_port = srv.socket.getsockname()[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    p = subprocess.Popen([rust, d_rs, "127.0.0.1:0", f"encoding={encoding}"],
                         stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    rs_port = int(p.stdout.readline().split()[1])
    ndiff = 0
    try:
        for seq in SEQUENCES:
            a = session(py_port, seq)
            b = session(rs_port, seq)
            for (c, ra), (_, rb) in zip(a, b):
                if ra != rb:
                    ndiff += 1
                    print(f"== {c}\n  pyftpdlib: {ra!r}\n  ftpdlib:   {rb!r}")
            if len(a) < len(seq) or len(b) < len(seq):
                print(f"-- sequence {seq[:2]}...: {len(a)}/{len(b)} of {len(seq)} answered")
            if len(a) != len(b):
                print(f"== sequence {seq[:3]}... lengths differ {len(a)} vs {len(b)}")
        for (c, ra), (_, rb) in zip(transfers(py_port, encoding), transfers(rs_port, encoding)):
            if ra != rb:
                ndiff += 1
                print(f"== {c}\n  pyftpdlib: {ra!r}\n  ftpdlib:   {rb!r}")
    finally:
        p.terminate()
        p.wait()
        srv.close_all()
        shutil.rmtree(base)
    print(f"{ndiff} differing replies")


if __name__ == "__main__":
    main()
