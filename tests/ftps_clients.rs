//! FTPS with the clients people script with (RFC 4217): curl (several files in one session
//! under TLS 1.2 and 1.3, explicit and implicit, CCC, uploads, active mode), wget, lftp
//! (mirror both ways) and Python's `ftplib.FTP_TLS` (with a subclass that resumes the control
//! connection's TLS session on data connections, and without it). Each test skips with a
//! message when its client is missing (and fails under `CI=true`); every client run is
//! bounded by a timeout.

mod common;

use std::process::Command;
use std::time::Duration;

use common::tls::*;
use common::*;

// ---------------------------------------------------------------- curl

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-s", "-S", "-k", "--max-time", "30", "-u", "user:12345"])
        .args(args)
        .output()
        .expect("run curl")
}

#[test]
fn curl_explicit_passive() {
    let c = need!(certs());
    if !tool("curl") {
        return;
    }
    let s = tls_server(&c);
    let data = pattern(200_000);
    s.write("dl.bin", &data);
    let url = format!("ftp://127.0.0.1:{}/", s.addr.port());
    let out = curl(&["--ssl-reqd", &format!("{url}dl.bin")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, data);
    let up = s.dir.path().join("local.bin");
    std::fs::write(&up, &data).unwrap();
    let out = curl(&[
        "--ssl-reqd",
        "-T",
        up.to_str().unwrap(),
        &format!("{url}up.bin"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(s.read("up.bin"), data);
    let out = curl(&["--ssl-reqd", &url]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("up.bin"));
    // TLS 1.2: session-ID resumption.
    let out = curl(&["--ssl-reqd", "--tls-max", "1.2", &format!("{url}dl.bin")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, data);
    // --ftp-ssl-control: encrypted control, clear data (PROT C is the default).
    let out = curl(&["--ftp-ssl-control", &format!("{url}dl.bin")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, data);
}

#[test]
fn curl_implicit_and_ccc() {
    let c = need!(certs());
    if !tool("curl") {
        return;
    }
    let s = tls_builder(&c, |_| {}).implicit_tls(true).start();
    s.write("f.txt", b"implicit");
    let out = curl(&[&format!("ftps://127.0.0.1:{}/f.txt", s.addr.port())]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"implicit");

    let s = tls_server(&c);
    s.write("f.txt", b"after ccc");
    // CCC: the client shuts TLS down and both go on in plaintext on the same socket.
    let out = curl(&[
        "--ssl-reqd",
        "--ftp-ssl-ccc",
        "--ftp-ssl-ccc-mode",
        "active",
        &format!("ftp://127.0.0.1:{}/f.txt", s.addr.port()),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"after ccc");
}

/// Files `a.txt`, `b.txt`, `c.txt` in the server's root; their contents concatenated.
fn three_files(s: &Server) -> Vec<u8> {
    let mut all = Vec::new();
    for (name, body) in [
        ("a.txt", "first\n"),
        ("b.txt", "second!\n"),
        ("c.txt", "third\n"),
    ] {
        s.write(name, body.as_bytes());
        all.extend_from_slice(body.as_bytes());
    }
    all
}

/// Several transfers in one curl command share one control connection: every data
/// connection must resume its TLS session (OpenSSL uses each TLS 1.3 ticket once, so each
/// data connection needs a fresh one). TLS 1.3 and 1.2, explicit and implicit FTPS.
#[test]
fn curl_several_files_in_one_session() {
    let c = need!(certs());
    if !tool("curl") {
        return;
    }
    for implicit in [false, true] {
        let s = tls_builder(&c, |_| {}).implicit_tls(implicit).start();
        let all = three_files(&s);
        let base = match implicit {
            true => format!("ftps://127.0.0.1:{}/", s.addr.port()),
            false => format!("ftp://127.0.0.1:{}/", s.addr.port()),
        };
        let urls: Vec<String> = ["a.txt", "b.txt", "c.txt"]
            .iter()
            .map(|f| format!("{base}{f}"))
            .collect();
        for version in [
            ["--tlsv1.3", "--tls-max", "1.3"],
            ["--tlsv1.2", "--tls-max", "1.2"],
        ] {
            let what = format!("implicit={implicit} {version:?}");
            let mut args: Vec<&str> = vec!["--ssl-reqd"];
            args.extend(version);
            let mut three = args.clone();
            three.extend(urls.iter().map(String::as_str));
            let out = curl(&three);
            assert!(out.status.success(), "{what}: {out:?}");
            assert_eq!(out.stdout, all, "{what}");
            // A listing, then a download.
            let mut list_then_get = args.clone();
            list_then_get.extend([base.as_str(), urls[1].as_str()]);
            let out = curl(&list_then_get);
            assert!(out.status.success(), "{what}: {out:?}");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("c.txt") && text.ends_with("second!\n"),
                "{what}: {text}"
            );
        }
    }
}

/// Uploads of several files in one command, then downloads after CCC (the control
/// connection back in plaintext, data connections still protected).
#[test]
fn curl_uploads_and_ccc_in_one_session() {
    let c = need!(certs());
    if !tool("curl") {
        return;
    }
    let s = tls_server(&c);
    let all = three_files(&s);
    let local = tempfile::tempdir().unwrap();
    let (x, y) = (local.path().join("x.bin"), local.path().join("y.bin"));
    std::fs::write(&x, pattern(300_000)).unwrap();
    std::fs::write(&y, pattern(70_000)).unwrap();
    let base = format!("ftp://127.0.0.1:{}/", s.addr.port());
    let glob = format!("{{{},{}}}", x.display(), y.display());
    let out = curl(&[
        "--ssl-reqd",
        "-T",
        &glob,
        &format!("{base}up/"),
        "--ftp-create-dirs",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(s.read("up/x.bin"), pattern(300_000));
    assert_eq!(s.read("up/y.bin"), pattern(70_000));
    let urls: Vec<String> = ["a.txt", "b.txt", "c.txt"]
        .iter()
        .map(|f| format!("{base}{f}"))
        .collect();
    let mut args = vec![
        "--ssl-reqd",
        "--ftp-ssl-ccc",
        "--ftp-ssl-ccc-mode",
        "active",
    ];
    args.extend(urls.iter().map(String::as_str));
    let out = curl(&args);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, all);
}

/// Active mode (`-P`): a data handshake that never completes (curl 7.87 and 7.88 do not
/// start it: curl issue 10666) ends with 425 after the data handshake timeout, logged as a
/// timeout, instead of holding curl for its whole `--max-time`. A curl that does the
/// handshake gets the file.
#[test]
fn curl_active_mode_is_bounded() {
    let c = need!(certs());
    if !tool("curl") {
        return;
    }
    logs::logged(""); // capture from the start
    let s = tls_builder(&c, |t| t.data_handshake_timeout = Duration::from_secs(2)).start();
    s.write("f.txt", b"active ftps");
    let url = format!("ftp://127.0.0.1:{}/f.txt", s.addr.port());
    let out = Command::new("curl")
        .args(["-s", "-S", "-k", "--max-time", "120", "-u", "user:12345"])
        .args(["--ssl-reqd", "-P", "127.0.0.1", &url])
        .output()
        .expect("run curl");
    if out.status.success() {
        assert_eq!(out.stdout, b"active ftps");
        return;
    }
    // curl's exit code 28 is its own --max-time: the server held it.
    assert_ne!(out.status.code(), Some(28), "{out:?}");
    let lines = logs::logged("TLS handshake on the data connection timed out");
    assert!(!lines.is_empty(), "{out:?}");
}

// ---------------------------------------------------------------- wget

/// wget's `ftps://` (explicit AUTH TLS, PROT P) resumes the control session on each data
/// connection (`--ftps-resume-ssl`, its default): several files in one run.
#[test]
fn wget_several_files() {
    let c = need!(certs());
    if !tool("wget") {
        return;
    }
    let s = tls_server(&c);
    three_files(&s);
    let local = tempfile::tempdir().unwrap();
    let base = format!("ftps://127.0.0.1:{}/", s.addr.port());
    let out = Command::new("timeout")
        .args(["60", "wget", "-q", "--no-check-certificate", "--tries=1"])
        .args(["--user", USER, "--password", PASS, "-P"])
        .arg(local.path())
        .args(["a.txt", "b.txt", "c.txt"].map(|f| format!("{base}{f}")))
        .output()
        .expect("run wget");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(local.path().join("c.txt")).unwrap(),
        b"third\n"
    );
}

// ---------------------------------------------------------------- lftp

fn lftp(script: &str) -> std::process::Output {
    Command::new("timeout")
        .args(["120", "lftp", "-c", script])
        .output()
        .expect("run lftp")
}

#[test]
fn lftp_passive_and_active() {
    let c = need!(certs());
    if !tool("lftp") {
        return;
    }
    let s = tls_builder(&c, |t| {
        t.tls_control_required = true;
        t.tls_data_required = true;
    })
    .start();
    let data = pattern(500_000);
    s.write("dl.bin", &data);
    let local = tempfile::tempdir().unwrap();
    let l = local.path();
    std::fs::write(l.join("src.bin"), &data).unwrap();
    let script = format!(
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; \
         set ssl:verify-certificate no; set net:max-retries 1; set net:timeout 20; \
         open -u {USER},{PASS} ftp://127.0.0.1:{port}; \
         get dl.bin -o {l}/p.bin; put {l}/src.bin -o up_p.bin; cls -1 > {l}/p.txt; \
         set ftp:passive-mode false; \
         get dl.bin -o {l}/a.bin; put {l}/src.bin -o up_a.bin; cls -1 > {l}/a.txt; bye",
        port = s.addr.port(),
        l = l.display()
    );
    let out = lftp(&script);
    assert!(out.status.success(), "{out:?}");
    for f in ["p.bin", "a.bin"] {
        assert_eq!(std::fs::read(l.join(f)).unwrap(), data, "{f}");
    }
    assert_eq!(s.read("up_p.bin"), data);
    assert_eq!(s.read("up_a.bin"), data);
    for f in ["p.txt", "a.txt"] {
        let listing = std::fs::read_to_string(l.join(f)).unwrap();
        assert!(listing.contains("dl.bin"), "{f}: {listing}");
    }
}

/// lftp `mirror` both ways under TLS 1.3 with the reuse check on: more data connections than
/// the control connection has tickets (GnuTLS offers the control connection's session again
/// on each).
#[test]
fn lftp_mirror_both_ways() {
    let c = need!(certs());
    if !tool("lftp") {
        return;
    }
    let s = tls_server(&c);
    for i in 0..12 {
        s.write(&format!("src/f{i}.bin"), &pattern(10_000 + i * 1000));
    }
    let local = tempfile::tempdir().unwrap();
    let l = local.path();
    let script = format!(
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; \
         set ssl:verify-certificate no; set net:max-retries 1; set net:timeout 20; \
         open -u {USER},{PASS} ftp://127.0.0.1:{port}; \
         mirror src {l}/down; mirror -R {l}/down up; bye",
        port = s.addr.port(),
        l = l.display()
    );
    let out = lftp(&script);
    assert!(out.status.success(), "{out:?}");
    for i in 0..12 {
        let want = pattern(10_000 + i * 1000);
        let name = format!("f{i}.bin");
        assert_eq!(
            std::fs::read(l.join("down").join(&name)).unwrap(),
            want,
            "{name}"
        );
        assert_eq!(s.read(&format!("up/{name}")), want, "up/{name}");
    }
}

/// rustls' own log lines lack the session's prefix, and its warning about lftp sending an
/// IP address as SNI (normal client behaviour) appeared once per connection: the binary
/// logs TLS events itself, each with `ip:port-[user]`.
#[test]
fn tls_log_lines_carry_the_session_prefix() {
    let c = need!(certs());
    if !tool("lftp") {
        return;
    }
    let args = ["--tls", "--certfile", c.cert.to_str().unwrap()];
    let mut args = args.to_vec();
    args.extend(["--keyfile", c.key.to_str().unwrap()]);
    let bin = BinServer::start(&args);
    std::fs::write(bin.root.join("f.txt"), b"x").unwrap();
    let local = tempfile::tempdir().unwrap();
    let script = format!(
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; \
         set ssl:verify-certificate no; set net:max-retries 1; set net:timeout 20; \
         open -u {USER},{PASS} ftp://127.0.0.1:{port}; get f.txt -o {l}/f.txt; cls; bye",
        port = bin.addr.port(),
        l = local.path().display()
    );
    let out = lftp(&script);
    assert!(out.status.success(), "{out:?}");
    assert!(bin.wait_log("control connection secured"));
    assert!(bin.wait_log("completed=1"));
    let log = bin.log();
    assert!(!log.contains("SNI"), "{log}");
    for line in log.lines().filter(|l| l.contains("TLS")) {
        if line.contains(">>> starting") || line.contains("FTPS:") {
            continue;
        }
        assert!(
            line.contains("127.0.0.1:"),
            "no session prefix: {line}\n{log}"
        );
    }
}

// ---------------------------------------------------------------- Python's ftplib

/// `python3 - PORT MODE TLS PASV`: MODE `reuse` wraps data sockets with the control
/// connection's TLS session (the subclass the README shows), `plain` uses `FTP_TLS` as it
/// is; TLS `1.2` caps the version; PASV `0` is active mode. Downloads, an upload, listings.
const FTPLIB: &str = r#"
import ftplib, io, ssl, sys

class ReusingFTP_TLS(ftplib.FTP_TLS):
    """Data connections resume the control connection's TLS session."""
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session)
        return conn, size

port, mode, tls, pasv = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if tls == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
cls = ReusingFTP_TLS if mode == "reuse" else ftplib.FTP_TLS
ftp = cls(context=ctx, timeout=20)
ftp.connect("127.0.0.1", port)
ftp.login("user", "12345")
ftp.prot_p()
ftp.set_pasv(pasv)
for _ in range(3):
    got = io.BytesIO()
    ftp.retrbinary("RETR f.bin", got.write)
    assert got.getvalue() == bytes(range(256)) * 400, len(got.getvalue())
ftp.storbinary("STOR up.bin", io.BytesIO(b"uploaded by ftplib" * 5000))
lines = []
ftp.retrlines("LIST", lines.append)
assert any(l.endswith("up.bin") for l in lines), lines
assert "up.bin" in ftp.nlst()
got = io.BytesIO()
ftp.retrbinary("RETR up.bin", got.write)
assert got.getvalue() == b"uploaded by ftplib" * 5000
ftp.quit()
print("ok")
"#;

/// Runs [`FTPLIB`] against `s`.
fn ftplib(s: &Server, mode: &str, tls: &str, pasv: bool) -> std::process::Output {
    use std::io::Write as _;
    let mut child = Command::new("timeout")
        .args(["60", "python3", "-"])
        .arg(s.addr.port().to_string())
        .args([mode, tls, if pasv { "1" } else { "0" }])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(FTPLIB.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().expect("python3")
}

/// The bytes [`FTPLIB`] downloads.
fn ftplib_file() -> Vec<u8> {
    (0..400).flat_map(|_| 0..=255u8).collect()
}

/// `FTP_TLS` with the subclass the README shows passes with the reuse check on: TLS 1.3 and
/// 1.2, passive and active.
#[test]
fn ftplib_resuming_the_control_session() {
    let c = need!(certs());
    if !tool("python3") {
        return;
    }
    let s = tls_server(&c);
    s.write("f.bin", &ftplib_file());
    for tls in ["1.3", "1.2"] {
        for pasv in [true, false] {
            let out = ftplib(&s, "reuse", tls, pasv);
            assert!(out.status.success(), "TLS {tls} pasv={pasv}: {out:?}");
        }
    }
}

/// `FTP_TLS` as it is never resumes: refused with 522, and the log line says how to fix it
/// (the subclass, or the flag that turns the check off); with the check off it passes.
#[test]
fn ftplib_without_resumption() {
    let c = need!(certs());
    if !tool("python3") {
        return;
    }
    logs::logged(""); // capture from the start
    let s = tls_server(&c);
    s.write("f.bin", &ftplib_file());
    let out = ftplib(&s, "plain", "1.3", true);
    assert!(!out.status.success(), "{out:?}");
    let hint = logs::logged("does not resume the control connection");
    assert!(
        hint.iter().any(|l| l.contains("session=")
            && l.contains("--disable-tls-reuse-check")
            && l.contains("require_session_reuse")),
        "{hint:?}"
    );
    let s = tls_builder(&c, |t| t.require_session_reuse = false).start();
    s.write("f.bin", &ftplib_file());
    for tls in ["1.3", "1.2"] {
        let out = ftplib(&s, "plain", tls, true);
        assert!(out.status.success(), "TLS {tls}: {out:?}");
    }
}
