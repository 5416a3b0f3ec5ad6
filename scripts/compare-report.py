#!/usr/bin/env python3
"""compare-report.py: the tables and charts of scripts/compare.sh from its raw results.

Reads results/SERVER/RUN.csv (ftpbench's key,value,unit,label lines; RUN is the round, with
a phase suffix: 1, 1.8k, 1.second, 1.ftps-ecdsa, 1.sessions) and results/loopback/*.csv, and
writes into --out-dir:

  table.md        markdown tables of medians over the rounds: plain FTP, FTPS per
                  certificate, the many-sessions curve, the targets met or missed
  charts/KEY.svg  one horizontal bar chart per workload (ftpdlib's models and the peers),
                  and sessions-login.svg / sessions-pss.svg (the curve)

Servers named ftpdlib-MODEL are ftpdlib; base-MODEL (compare.sh --baseline) is another
ftpdlib binary measured in the same rounds, shown beside it with a "÷ base" ratio; ab-a
and ab-b are the A/B login phase; everything else is a peer. Standard library only.
"""

import argparse
import csv
import math
import os
import statistics
from html import escape

HIGHER = {"MB/s", "/s", "%"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--servers", required=True)
    p.add_argument("--machine", default="")
    p.add_argument("--versions", default="")
    p.add_argument("--settings", default="")
    p.add_argument("--clients", default="1000")
    p.add_argument("--size", default="4M")
    p.add_argument("--second-load", default="")
    p.add_argument("--certs", default="")
    p.add_argument("--sessions", default="")
    return p.parse_args()


class Results:
    """Every figure of every run: data[server][key] = [values], runs[server][run][key]."""

    def __init__(self, root):
        self.data, self.runs, self.labels = {}, {}, {}
        for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            d = os.path.join(root, name)
            if not os.path.isdir(d):
                continue
            data, runs = self.data.setdefault(name, {}), self.runs.setdefault(name, {})
            for f in sorted(os.listdir(d)):
                run = f[:-4] if f.endswith(".csv") else f
                with open(os.path.join(d, f), newline="") as fh:
                    for row in csv.DictReader(fh):
                        try:
                            v = float(row["value"])
                        except (KeyError, TypeError, ValueError):
                            continue
                        self.labels.setdefault(row["key"], (row.get("label", ""), row.get("unit", "")))
                        if not math.isnan(v):
                            data.setdefault(row["key"], []).append(v)
                            runs.setdefault(run, {})[row["key"]] = v

    def med(self, server, key):
        v = self.data.get(server, {}).get(key)
        return statistics.median(v) if v else None

    def label(self, key, default=None):
        return self.labels.get(key, default or (key, ""))


def fmt(v):
    if v is None:
        return "n/a"
    a = abs(v)
    return "%.3f" % v if a < 10 else "%.1f" % v if a < 1000 else "{:,.0f}".format(v)


def better(a, b, unit):
    return a > b if unit in HIGHER else a < b


def best(res, servers, key, unit):
    """(value, server) of the best median among `servers`, or None."""
    vals = [(res.med(s, key), s) for s in servers if res.med(s, key) is not None]
    if not vals:
        return None
    b = vals[0]
    for v in vals[1:]:
        if better(v[0], b[0], unit):
            b = v
    return b


def ratio(ours, theirs, unit):
    """ours ÷ theirs as "how many times better" (rates: ours/theirs; times: theirs/ours)."""
    if not ours or not theirs or ours <= 0 or theirs <= 0:
        return None
    return ours / theirs if unit in HIGHER else theirs / ours


class Report:
    def __init__(self, a):
        self.a = a
        self.res = Results(a.results)
        servers = a.servers.split()
        self.ours = [s for s in servers if s.startswith("ftpdlib-")]
        self.base = [s for s in servers if s.startswith("base-")]
        self.peers = [s for s in servers if not s.startswith(("ftpdlib-", "base-"))]
        self.cols = self.ours + self.base + self.peers
        self.lines = []
        self.charts = []
        self.certs = a.certs.split()
        self.second = a.second_load.split(":")[0] if a.second_load else ""
        self.second_size = a.second_load.split(":")[1] if ":" in a.second_load else ""

    def out(self, s=""):
        self.lines.append(s)

    # --- tables ---------------------------------------------------------------------------
    def header(self):
        cols = [c.replace("ftpdlib-", "") for c in self.cols]
        extra = " ÷ base |" if self.base else ""
        self.out("| workload | unit | " + " | ".join(cols) + " | ftpdlib ÷ best peer |" + extra)
        self.out("|---|---|" + "---|" * len(cols) + "---|" + ("---|" if self.base else ""))

    def row(self, key, label=None, unit=None, chart=True, no_ratio=False):
        """One table row (skipped when no server has the key)."""
        if not any(self.res.data.get(s, {}).get(key) for s in self.cols):
            return
        l, u = self.res.label(key)
        label, unit = label or l, unit or u
        cells = [fmt(self.res.med(s, key)) for s in self.cols]
        cell = ""
        bo, bp = best(self.res, self.ours, key, unit), best(self.res, self.peers, key, unit)
        if bo and bp and not no_ratio:
            r = ratio(bo[0], bp[0], unit)
            if r:
                cell = "%.2f× (%s vs %s)" % (r, bo[1].replace("ftpdlib-", ""), bp[1])
        extra = ""
        if self.base:
            rs = []
            for b in self.base:
                o = "ftpdlib-" + b[len("base-"):]
                r = ratio(self.res.med(o, key), self.res.med(b, key), unit)
                if r:
                    rs.append("%.2f× %s" % (r, b[len("base-"):]))
            extra = " %s |" % ", ".join(rs)
        self.out("| %s | %s | %s | %s |%s" % (label, unit, " | ".join(cells), cell, extra))
        if chart:
            self.charts.append((key, label, unit))

    def plain(self):
        n, sec = self.a.clients, self.second
        self.out("### Plain FTP")
        self.out()
        self.header()
        for key in ["stor_mbps", "stor_mbps_8k", "retr_mbps", "retr_mbps_8k", "list_ms", "mlsd_ms",
                    "logins_per_s", "connect_login_s", "connect_login_s_" + sec,
                    "mem_base_kib", "mem_per_client_kib", "stor_idle_mbps", "retr_idle_mbps",
                    "multi_retr_s", "multi_stor_s", "multi_retr_s_" + sec, "multi_stor_s_" + sec,
                    "quit_s"]:
            label = None
            if key.endswith("_" + sec) and sec and key.startswith("connect_login"):
                label = "%s clients connect+login" % sec
            self.row(key, label=label, chart=key != "mem_base_kib", no_ratio=key == "mem_base_kib")
        self.out()
        self.out("Cost of uploads per byte: the server's CPU (user+system; from its cgroup when "
                 "compare.sh could make one, else /proc), its context switches (/proc, per "
                 "thread), and the client's own CPU (when the client costs more against one "
                 "server, that server kept it busier):")
        self.out()
        self.header()
        loads = [("stor", "", "STOR 1 client, 256 KiB writes"), ("stor", "_8k", "STOR 1 client, 8 KiB writes"),
                 ("multi_stor", "", "%s clients STOR at once" % n)]
        if sec:
            loads.append(("multi_stor", "_" + sec, "%s clients STOR at once" % sec))
        for key, suffix, what in loads:
            self.row("%s_cpu_s_per_gb%s" % (key, suffix), label="%s: server CPU per GB" % what, unit="s/GB")
            self.row("%s_cs_per_mb%s" % (key, suffix), label="%s: context switches per MB" % what,
                     unit="/MB", chart=False)
            self.row("%s_client_cpu_s_per_gb%s" % (key, suffix), label="%s: ftpbench's own CPU per GB" % what,
                     unit="s/GB", chart=False, no_ratio=True)
        self.loopback_rows()

    def loopback_rows(self):
        res = self.res
        cells = []
        for s in self.cols:
            v = res.med(s, "retr_sendfile_pct")
            cells.append("n/a" if v is None else "%.0f%%" % v)
        self.out("| RETR 1 client ÷ loopback sendfile, interleaved | %% | %s | |%s"
                 % (" | ".join(cells), " |" if self.base else ""))
        for k, lk, what in [("stor_mbps", "loopback_write_mbps", "STOR 1 client ÷ loopback write"),
                            ("logins_per_s", "loopback_connect_per_s", "logins/s ÷ loopback connects/s")]:
            cells = []
            for s in self.cols:
                v = self.share(s, k, lk)
                cells.append("n/a" if v is None else "%.1f%%" % v if v < 10 else "%.0f%%" % v)
            self.out("| %s | %% | %s | |%s" % (what, " | ".join(cells), " |" if self.base else ""))
        self.out()
        lims = []
        for k in ["loopback_sendfile_mbps", "loopback_write_mbps", "loopback_connect_per_s"]:
            v = res.med("loopback", k)
            if v is not None:
                l, u = res.label(k)
                lims.append("%s %s %s" % (l, fmt(v), u))
        if lims:
            self.out("Loopback limit (no FTP; before and after every plain run, median): "
                     + "; ".join(lims) + ".")
            self.out()

    def share(self, s, k, lk):
        """Median over rounds of figure k as a percentage of the loopback limit lk measured
        around the same run (the higher of the before and after samples)."""
        shares = []
        for run, figs in self.res.runs.get(s, {}).items():
            lims = [self.res.runs.get("loopback", {}).get("%s-%s-%s" % (run, s, w), {}).get(lk)
                    for w in ("before", "after")]
            lims = [v for v in lims if v]
            if k in figs and lims:
                shares.append(100 * figs[k] / max(lims))
        return statistics.median(shares) if shares else None

    def ftps(self):
        if not self.certs or not any(k.startswith("tls_") for d in self.res.data.values() for k in d):
            return
        self.out("### FTPS (explicit, AUTH TLS + PROT P, TLS 1.3)")
        self.out()
        self.header()
        for cert in self.certs:
            c = "ECDSA P-256" if cert == "ecdsa" else "RSA 2048" if cert == "rsa" else cert
            for key in ["tls_stor_mbps", "tls_retr_mbps", "tls_logins_per_s", "tls_connect_login_s"]:
                k = "%s_%s" % (key, cert)
                l, u = self.res.label(k)
                self.row(k, label="%s, %s" % (l, c), unit=u)
            self.row("tls_stor_cpu_s_per_gb_%s" % cert, label="FTPS STOR 1 client: server CPU per GB, %s" % c,
                     unit="s/GB")
        self.out()

    def sessions(self):
        steps = [int(x) for x in self.a.sessions.split(",") if x.strip().isdigit()]
        have = [s for s in self.cols if any(k.startswith("sessions_") for k in self.res.data.get(s, {}))]
        if not steps or not have:
            return
        self.out("### Many logged-in sessions")
        self.out()
        self.header()
        for n in steps:
            self.row("sessions_%d_login_s" % n)
            self.row("sessions_%d_pss_per_kib" % n)
        self.row("sessions_list_s")
        self.row("sessions_quit_s", chart=False)
        self.out()
        self.curve(steps, have)

    def ab(self):
        if not self.res.data.get("ab-a"):
            return
        self.out("### A/B login phase (same binary, B with extra flags)")
        self.out()
        self.out("| workload | unit | A | B | B ÷ A |")
        self.out("|---|---|---|---|---|")
        for key in ["logins_per_s"]:
            l, u = self.res.label(key)
            a, b = self.res.med("ab-a", key), self.res.med("ab-b", key)
            r = ratio(b, a, u)
            self.out("| %s | %s | %s | %s | %s |" % (l, u, fmt(a), fmt(b), "%.3f×" % r if r else "n/a"))
        self.out()

    # --- targets ----------------------------------------------------------------------------
    def targets(self):
        res, sec = self.res, self.second
        rows = []

        def vs_best(key, what, need, unit=None, peers=None):
            unit = unit or res.label(key)[1]
            bo = best(res, self.ours, key, unit)
            bp = best(res, peers or self.peers, key, unit)
            if not bo or not bp:
                rows.append((what, "n/a", "not measured"))
                return
            r = ratio(bo[0], bp[0], unit)
            got = "%.2f× (%s %s vs %s %s)" % (r, bo[1].replace("ftpdlib-", ""), fmt(bo[0]), bp[1], fmt(bp[0]))
            rows.append((what, got, "met" if r >= need else "missed"))

        vs_best("stor_mbps", "STOR 1 client, 256 KiB writes ≥ 1.2× best peer", 1.2)
        vs_best("stor_mbps_8k", "STOR 1 client, 8 KiB writes ≥ 1.2× best peer", 1.2)
        if sec:
            vs_best("multi_stor_s_" + sec, "%s × %s concurrent STOR no slower than best peer"
                    % (sec, self.second_size), 1.0)
        vs_best("multi_stor_s", "%s × %s concurrent STOR no slower than best peer" % (self.a.clients, self.a.size), 1.0)
        for key, what in [("stor_cpu_s_per_gb", "1 client"), ("multi_stor_cpu_s_per_gb", "%s clients" % self.a.clients),
                          ("multi_stor_cpu_s_per_gb_" + sec, "%s clients" % sec)]:
            if key.endswith("_") or not any(res.data.get(s, {}).get(key) for s in self.cols):
                continue
            vs_best(key, "server CPU per uploaded GB, %s, below every peer" % what, 1.0, unit="s/GB")
        vs_best("retr_mbps_8k", "RETR 1 client, 8 KiB reads ≥ 0.9× pure-ftpd", 0.9, peers=["pure-ftpd"])
        if sec:
            vs_best("connect_login_s_" + sec, "%s concurrent connect+login ≤ 0.8× best peer's time" % sec, 1.25)
        vs_best("logins_per_s", "sequential logins ≥ 1.3× best peer", 1.3)
        for cert in self.certs:
            for key, what in [("tls_retr_mbps", "FTPS RETR 1 client"), ("tls_stor_mbps", "FTPS STOR 1 client"),
                              ("tls_connect_login_s", "concurrent FTPS logins"),
                              ("tls_logins_per_s", "sequential FTPS logins/s")]:
                vs_best("%s_%s" % (key, cert), "%s ≥ 1.2× best peer (%s)" % (what, cert), 1.2)
            t = best(res, self.ours, "tls_retr_mbps_" + cert, "MB/s")
            if t:
                p = res.med(t[1], "retr_mbps")
                r = t[0] / p if p else None
                rows.append(("FTPS RETR ≥ 0.5× plaintext RETR (%s, %s)" % (cert, t[1].replace("ftpdlib-", "")),
                             "%.2f× (%s vs %s MB/s)" % (r, fmt(t[0]), fmt(p)) if r else "n/a",
                             "met" if r and r >= 0.5 else "missed"))
        steps = [int(x) for x in self.a.sessions.split(",") if x.strip().isdigit()]
        if steps:
            top = max(steps)
            for s in ("ftpdlib-pool", "ftpdlib-pre-fork"):
                v = res.med(s, "sessions_%d_pss_per_kib" % top)
                if s not in self.cols:
                    continue
                ok = v is not None and (v <= 16 or s != "ftpdlib-pool")
                rows.append(("%d sessions held by %s%s" % (top, s.replace("ftpdlib-", ""),
                             ", PSS ≤ 16 KiB per session" if s == "ftpdlib-pool" else ""),
                             "n/a" if v is None else "%s KiB per session" % fmt(v), "met" if ok else "missed"))
            for key, what in [("sessions_%d_login_s" % top, "%d sessions connect+login vs pyftpdlib" % top),
                              ("sessions_list_s", "a LIST from each of %d sessions vs pyftpdlib" % top)]:
                vs_best(key, what + " (≥ 1×)", 1.0, peers=["pyftpdlib"])
        self.out("### Targets")
        self.out()
        self.out("| target | ratio in this run | |")
        self.out("|---|---|---|")
        for what, got, verdict in rows:
            self.out("| %s | %s | %s |" % (what, got, verdict))
        self.out()

    # --- charts -----------------------------------------------------------------------------
    def bars(self, key, label, unit):
        items = [(s, self.res.med(s, key)) for s in self.cols]
        items = [(s, v) for s, v in items if v is not None]
        if not items:
            return None
        w, lh, left, right = 640, 22, 150, 90
        h = 40 + lh * len(items) + 20
        top = max(v for _, v in items) or 1
        note = "higher is better" if unit in HIGHER else "lower is better"
        svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
               'font-size="12">' % (w, h),
               '<rect width="100%" height="100%" fill="white"/>',
               '<text x="8" y="18" font-weight="bold">%s</text>' % escape(label),
               '<text x="8" y="34" fill="#555">%s, %s; medians</text>' % (escape(unit), note)]
        for i, (s, v) in enumerate(items):
            y = 44 + i * lh
            bw = (w - left - right) * v / top
            colour = "#1f6fb2" if s.startswith("ftpdlib-") else "#8fb8de" if s.startswith("base-") else "#999999"
            svg.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (left - 6, y + 14, escape(s)))
            svg.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (left, y + 2, max(bw, 1), lh - 6, colour))
            svg.append('<text x="%.1f" y="%d">%s</text>' % (left + max(bw, 1) + 4, y + 14, fmt(v)))
        svg.append("</svg>")
        return "\n".join(svg) + "\n"

    def curve(self, steps, servers):
        for what, key, unit in [("login", "sessions_%d_login_s", "s"), ("pss", "sessions_%d_pss_per_kib", "KiB")]:
            series = []
            for s in servers:
                pts = [(n, self.res.med(s, key % n)) for n in steps]
                pts = [(n, v) for n, v in pts if v is not None]
                if pts:
                    series.append((s, pts))
            if not series:
                continue
            title = ("connect+login of N sessions, from zero" if what == "login"
                     else "server PSS per logged-in session")
            self.write_svg("sessions-%s.svg" % what, self.lines_svg(title, unit, steps, series))

    def lines_svg(self, title, unit, steps, series):
        w, h, l, r, t, b = 640, 320, 60, 150, 40, 40
        xmax = max(steps)
        ymax = max(v for _, pts in series for _, v in pts) or 1
        palette = ["#1f6fb2", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#666666"]
        sx = lambda n: l + (w - l - r) * n / xmax
        sy = lambda v: h - b - (h - t - b) * v / ymax
        svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
               'font-size="12">' % (w, h), '<rect width="100%" height="100%" fill="white"/>',
               '<text x="8" y="18" font-weight="bold">%s (%s)</text>' % (escape(title), escape(unit)),
               '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (l, h - b, w - r, h - b),
               '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (l, t, l, h - b)]
        for n in steps:
            svg.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (sx(n), h - b + 16, n))
        for frac in (0.5, 1.0):
            svg.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (l - 4, sy(ymax * frac) + 4, fmt(ymax * frac)))
        svg.append('<text x="%d" y="%d" text-anchor="middle">sessions</text>' % ((l + w - r) // 2, h - 6))
        for i, (s, pts) in enumerate(series):
            c = palette[i % len(palette)]
            svg.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                       % (c, " ".join("%.1f,%.1f" % (sx(n), sy(v)) for n, v in pts)))
            for n, v in pts:
                svg.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (sx(n), sy(v), c))
            svg.append('<text x="%d" y="%d" fill="%s">%s</text>' % (w - r + 10, t + 16 * i + 10, c, escape(s)))
        svg.append("</svg>")
        return "\n".join(svg) + "\n"

    def write_svg(self, name, text):
        d = os.path.join(self.a.out_dir, "charts")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), "w") as f:
            f.write(text)

    def run(self):
        a = self.a
        self.out("Machine: %s. %s" % (a.machine, a.versions))
        self.out()
        self.out(a.settings)
        self.out()
        self.plain()
        self.ftps()
        self.sessions()
        self.ab()
        self.targets()
        self.out("Ratio > 1: ftpdlib's best model beats the best peer (rates: ours/peer; times, "
                 "memory and cost: peer/ours). Charts: charts/KEY.svg.")
        for key, label, unit in self.charts:
            svg = self.bars(key, label, unit)
            if svg:
                self.write_svg(key + ".svg", svg)
        with open(os.path.join(a.out_dir, "table.md"), "w") as f:
            f.write("\n".join(self.lines) + "\n")


if __name__ == "__main__":
    Report(parse_args()).run()
