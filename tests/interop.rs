//! Real clients against the `ftpdlib` binary: lftp (mirror both ways, passive and active,
//! pipelined), curl (resume, --ftp-method, -Q quote commands, active -P, IPv6) and Python's
//! ftplib (MLSD, NLST, ASCII storlines/retrlines, STAT and ABOR mid-transfer, STOU).
//! Each test skips with a message when its client is not installed, and every client run is
//! bounded by a timeout.

mod common;
use common::{pattern, tool};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ftpdlib");
/// Longest any one client run may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary serving a fresh directory with user `user`/`12345` (full permissions).
struct Bin {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Bin {
    fn start(interface: &str) -> Bin {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("srv");
        std::fs::create_dir(&root).unwrap();
        let mut child = Command::new(BIN)
            .args([
                "-i", interface, "-p", "0", "-w", "-u", "user", "-P", "12345",
            ])
            .arg("-d")
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ftpdlib");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut port = None;
        let mut line = String::new();
        while err.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(rest) = line.split("starting FTP server on ").nth(1) {
                let addr = rest.split(',').next().unwrap();
                port = addr.rsplit(':').next().and_then(|p| p.parse().ok());
                break;
            }
            line.clear();
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in err.lines() {});
        Bin {
            child,
            port: port.expect("startup line on stderr"),
            dir,
        }
    }

    /// The served directory.
    fn root(&self) -> PathBuf {
        self.dir.path().join("srv")
    }

    /// A scratch directory for the client's side.
    fn local(&self) -> PathBuf {
        let p = self.dir.path().join("local");
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client to completion, killing it after `CLIENT_TIMEOUT`.
fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("client output");
    assert!(
        Instant::now() <= deadline,
        "client timed out: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(out: &Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed: {text}");
    text
}

fn seed(root: &Path) -> Vec<u8> {
    let data = pattern(300_000);
    std::fs::write(root.join("bin.dat"), &data).unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/a.txt"), b"alpha\n").unwrap();
    std::fs::write(root.join("sub/b.dat"), pattern(70_000)).unwrap();
    data
}

fn lftp(bin: &Bin, host: &str, passive: bool, script: &str) -> String {
    let settings = format!(
        "set net:max-retries 1; set net:timeout 10; set ftp:passive-mode {}; {script}; quit",
        if passive { "on" } else { "off" }
    );
    let out = run(Command::new("lftp")
        .current_dir(bin.local())
        .args(["-u", "user,12345", "-p", &bin.port.to_string(), host, "-e"])
        .arg(&settings));
    ok(&out, &format!("lftp {settings}"))
}

fn lftp_round_trip(interface: &str, host: &str, passive: bool, pipelined: bool) {
    if !tool("lftp") {
        return;
    }
    let bin = Bin::start(interface);
    let data = seed(&bin.root());
    let sync = if pipelined { "off" } else { "on" };
    let listing = lftp(
        &bin,
        host,
        passive,
        &format!(
            "set ftp:sync-mode {sync}; ls; get bin.dat; put bin.dat -o up.dat; \
             mirror sub msub; mirror -R msub rsub; mkdir newdir; rm up.dat; \
             rmdir newdir; cls -1 rsub"
        ),
    );
    assert!(listing.contains("bin.dat"), "{listing}");
    assert!(
        listing.contains("a.txt") && listing.contains("b.dat"),
        "{listing}"
    );
    let local = bin.local();
    assert_eq!(std::fs::read(local.join("bin.dat")).unwrap(), data);
    assert_eq!(std::fs::read(local.join("msub/a.txt")).unwrap(), b"alpha\n");
    assert_eq!(
        std::fs::read(bin.root().join("rsub/b.dat")).unwrap(),
        pattern(70_000)
    );
    assert!(!bin.root().join("up.dat").exists(), "rm worked");
    assert!(!bin.root().join("newdir").exists(), "rmdir worked");
}

#[test]
fn lftp_passive() {
    lftp_round_trip("127.0.0.1", "127.0.0.1", true, false);
}

#[test]
fn lftp_active() {
    lftp_round_trip("127.0.0.1", "127.0.0.1", false, false);
}

#[test]
fn lftp_pipelined() {
    lftp_round_trip("127.0.0.1", "127.0.0.1", true, true);
}

#[test]
fn lftp_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    lftp_round_trip("::1", "[::1]", true, false);
    lftp_round_trip("::1", "[::1]", false, false);
}

fn curl(args: &[&str]) -> Output {
    run(Command::new("curl")
        .args(["-s", "-S", "-g", "--max-time", "30"])
        .args(args))
}

fn curl_suite(interface: &str, host: &str) {
    if !tool("curl") {
        return;
    }
    let bin = Bin::start(interface);
    let data = seed(&bin.root());
    let url = format!("ftp://user:12345@{host}:{}", bin.port);
    let local = bin.local();

    let list = ok(&curl(&[&format!("{url}/")]), "curl LIST");
    assert!(list.contains("bin.dat") && list.contains("sub"), "{list}");
    let nlst = ok(&curl(&["-l", &format!("{url}/sub/")]), "curl NLST");
    assert_eq!(nlst.lines().collect::<Vec<_>>(), ["a.txt", "b.dat"]);

    // Upload, then a resumed download and a resumed upload (REST / APPE).
    let up = local.join("up.dat");
    std::fs::write(&up, &data).unwrap();
    ok(
        &curl(&["-T", up.to_str().unwrap(), &format!("{url}/sub/up.dat")]),
        "curl upload",
    );
    assert_eq!(std::fs::read(bin.root().join("sub/up.dat")).unwrap(), data);
    let part = local.join("part.dat");
    std::fs::write(&part, &data[..1000]).unwrap();
    ok(
        &curl(&[
            "-C",
            "-",
            "-o",
            part.to_str().unwrap(),
            &format!("{url}/bin.dat"),
        ]),
        "curl resumed download",
    );
    assert_eq!(std::fs::read(&part).unwrap(), data);
    std::fs::write(bin.root().join("sub/half.dat"), &data[..5000]).unwrap();
    ok(
        &curl(&[
            "-C",
            "-",
            "-T",
            up.to_str().unwrap(),
            &format!("{url}/sub/half.dat"),
        ]),
        "curl resumed upload",
    );
    assert_eq!(
        std::fs::read(bin.root().join("sub/half.dat")).unwrap(),
        data
    );

    // Every way curl walks to a file.
    for method in ["singlecwd", "nocwd", "multicwd"] {
        let out = ok(
            &curl(&["--ftp-method", method, &format!("{url}/sub/a.txt")]),
            method,
        );
        assert_eq!(out, "alpha\n", "{method}");
    }

    // Quote commands before and after the transfer.
    ok(
        &curl(&[
            "-Q",
            "MKD qdir",
            "-Q",
            "-RNFR qdir",
            "-Q",
            "-RNTO qdir2",
            &format!("{url}/"),
        ]),
        "curl -Q",
    );
    assert!(bin.root().join("qdir2").is_dir());
    let bad = curl(&["-Q", "RMD nonexistent", &format!("{url}/")]);
    assert!(!bad.status.success(), "a failing quote command fails curl");

    // Active mode (EPRT, then PORT).
    let act = local.join("act.dat");
    ok(
        &curl(&[
            "-P",
            "-",
            "-o",
            act.to_str().unwrap(),
            &format!("{url}/bin.dat"),
        ]),
        "curl active",
    );
    assert_eq!(std::fs::read(&act).unwrap(), data);
    if interface != "::1" {
        let out = ok(
            &curl(&["-P", "-", "--disable-eprt", &format!("{url}/sub/a.txt")]),
            "curl PORT",
        );
        assert_eq!(out, "alpha\n");
        let out = ok(
            &curl(&["--disable-epsv", &format!("{url}/sub/a.txt")]),
            "curl PASV",
        );
        assert_eq!(out, "alpha\n");
    }
    // ASCII mode download (TYPE A).
    std::fs::write(bin.root().join("t.txt"), b"one\ntwo\n").unwrap();
    let out = ok(&curl(&["-B", &format!("{url}/t.txt")]), "curl ASCII");
    assert_eq!(out.replace("\r\n", "\n"), "one\ntwo\n");
}

#[test]
fn curl_ipv4() {
    curl_suite("127.0.0.1", "127.0.0.1");
}

#[test]
fn curl_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    curl_suite("::1", "[::1]");
}

/// Python's ftplib; prints one line per check, the test compares them.
const FTPLIB_SCRIPT: &str = r#"
import ftplib, io, socket, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = ftplib.FTP(timeout=10)
c.connect(host, port)
c.login("user", "12345")
c.set_pasv(mode == "pasv")
print("nlst", c.nlst())
print("mlsd", sorted(n for n, f in c.mlsd()))
c.storlines("STOR lines.txt", io.BytesIO(b"a\nb\r\nc\n"))
out = []
c.retrlines("RETR lines.txt", out.append)
print("retrlines", out)
c.voidcmd("TYPE I")
conn = c.transfercmd("RETR big.dat")
conn.recv(4096)
c.putcmd("STAT")
print("stat", c.getmultiline().splitlines()[0][:4])
print("pwd", c.pwd())
print("abort", c.abort()[:3])
conn.close()
print("after", c.getresp()[:3])
print("size", c.size("big.dat"))
# pyftpdlib's test_stou order: STOU first (150 FILE: name), the data channel after it.
r = c.sendcmd("STOU")
name = r.split("FILE: ")[1]
if mode == "pasv":
    d = socket.create_connection(c.makepasv(), timeout=10)
else:
    l = c.makeport()
    d, _ = l.accept()
    l.close()
d.sendall(b"xyz")
d.close()
print("stou", r[:3], c.voidresp()[:3], c.size(name))
print("quit", c.quit()[:3])
"#;

fn ftplib_suite(interface: &str, host: &str, mode: &str) {
    if !tool("python3") {
        return;
    }
    let bin = Bin::start(interface);
    std::fs::write(bin.root().join("big.dat"), vec![0u8; 32 << 20]).unwrap();
    std::fs::write(bin.root().join("z.txt"), b"z").unwrap();
    let out =
        run(Command::new("python3").args(["-c", FTPLIB_SCRIPT, host, &bin.port.to_string(), mode]));
    let text = ok(&out, "python ftplib");
    let expected = [
        "nlst ['big.dat', 'z.txt']",
        "mlsd ['big.dat', 'z.txt']",
        "retrlines ['a', 'b', 'c']",
        "stat 211-",
        "pwd /",
        "abort 426",
        "after 226",
        &format!("size {}", 32 << 20),
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..expected.len()], &expected[..], "{text}");
    // STOU: 150 FILE: name, and the name is usable afterwards.
    assert!(lines.contains(&"stou 150 226 3"), "{text}");
    assert_eq!(lines.last(), Some(&"quit 221"), "{text}");
    assert_eq!(
        std::fs::read(bin.root().join("lines.txt")).unwrap(),
        b"a\nb\nc\n",
        "ASCII upload stored with local line ends"
    );
}

#[test]
fn ftplib_passive() {
    ftplib_suite("127.0.0.1", "127.0.0.1", "pasv");
}

#[test]
fn ftplib_active() {
    ftplib_suite("127.0.0.1", "127.0.0.1", "port");
}

#[test]
fn ftplib_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    ftplib_suite("::1", "::1", "pasv");
    ftplib_suite("::1", "::1", "port");
}
