//! Started by a service manager (pyftpdlib-inetd): inetd "nowait" (the connection is stdin),
//! inetd "wait" (the listener is stdin, exit when idle) and systemd socket activation
//! (the listener is fd 3, `LISTEN_PID`/`LISTEN_FDS`, `READY=1`/`STOPPING=1` on
//! `NOTIFY_SOCKET`). Each drives the built binary.

mod common;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_ftpdlib");

fn login(r: &mut Raw) {
    assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 230);
}

fn retr(r: &mut Raw, name: &str) -> Vec<u8> {
    assert_eq!(r.cmd("TYPE I").0, 200);
    let data = r.pasv();
    let (code, text) = r.cmd(&format!("RETR {name}"));
    assert!(code == 150 || code == 125, "{text}");
    let got = read_all(data);
    assert_eq!(r.reply().0, 226);
    got
}

#[test]
fn inetd_nowait_serves_stdin_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.bin"), pattern(100_000)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut child = Command::new(BIN)
        .args(["--inetd", "-u", USER, "-P", PASS, "-w", "-d"])
        .arg(dir.path())
        .stdin(Stdio::from(OwnedFd::from(conn)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut r = raw_from(client);
    login(&mut r);
    assert_eq!(retr(&mut r, "f.bin"), pattern(100_000));
    assert_eq!(r.cmd("QUIT").0, 221);
    assert!(r.is_closed());
    let deadline = Instant::now() + IO_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the inetd server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    assert!(
        out.is_empty(),
        "wrote to stdout: {:?}",
        String::from_utf8_lossy(&out)
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("logged in"), "logs go to stderr: {err}");
}

#[test]
fn inetd_nowait_refuses_a_non_socket() {
    let out = Command::new(BIN)
        .args(["-I", "-d", "/"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a socket"), "{err}");
}

#[test]
fn inetd_wait_serves_until_idle() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("f.bin"), pattern(5000)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--inetd-wait",
        "--idle-timeout",
        "1",
        "-u",
        USER,
        "-P",
        PASS,
        "-d",
    ])
    .arg(&root)
    .stdin(Stdio::from(OwnedFd::from(listener)));
    let mut bin = BinServer::spawn(cmd, dir, root);
    // A session longer than the idle timeout keeps the server alive.
    let mut r = raw_at(bin.addr);
    login(&mut r);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(r.cmd("NOOP").0, 200);
    assert_eq!(retr(&mut r, "f.bin"), pattern(5000));
    // A second client while the first is still there.
    let mut r2 = raw_at(bin.addr);
    login(&mut r2);
    assert_eq!(r2.cmd("QUIT").0, 221);
    assert!(
        bin.child.try_wait().unwrap().is_none(),
        "exited with a session open"
    );
    assert_eq!(r.cmd("QUIT").0, 221);
    let st = bin
        .wait_exit(Duration::from_secs(20))
        .expect("exits once idle");
    assert_eq!(st.code(), Some(0), "{}", bin.log());
    assert!(bin.log().contains("idle"), "{}", bin.log());
}

#[test]
fn systemd_socket_activation_and_notify() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("f.bin"), pattern(3000)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let notify_path = root.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // The listener becomes fd 3 of the exec'd server, whose pid is the shell's ($$).
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@" 3<&0 0</dev/null"#)
        .arg(BIN)
        .args(["-u", USER, "-P", PASS, "-d"])
        .arg(&root)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::from(OwnedFd::from(listener)));
    let mut bin = BinServer::spawn(cmd, dir, root);
    assert_eq!(bin.addr, addr, "serves the handed-over socket");
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).expect("READY=1");
    assert_eq!(&buf[..n], b"READY=1");
    let mut r = raw_at(addr);
    login(&mut r);
    assert_eq!(retr(&mut r, "f.bin"), pattern(3000));
    assert_eq!(r.cmd("QUIT").0, 221);
    bin.signal(Signal::SIGTERM);
    let n = notify.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let st = bin.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(st.code(), Some(0), "{}", bin.log());
    assert!(
        bin.log().contains("systemd socket activation"),
        "{}",
        bin.log()
    );
}

/// Starts the binary on a socket handed over as systemd does (fd 3), with `extra` flags.
fn socket_activated(listener: &TcpListener, root: &std::path::Path, extra: &[&str]) -> BinServer {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@" 3<&0 0</dev/null"#)
        .arg(BIN)
        .args(["-u", USER, "-P", PASS, "-d"])
        .arg(root)
        .args(extra)
        .stdin(Stdio::from(OwnedFd::from(listener.try_clone().unwrap())));
    BinServer::spawn(cmd, tempfile::tempdir().unwrap(), root.to_path_buf())
}

/// A socket that belongs to systemd is not closed during the drain: each new connection is
/// accepted, told 421 and closed, and once the server has exited the socket still queues
/// connections for the next instance, which serves them.
#[test]
fn systemd_socket_during_drain_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("f.bin"), pattern(256 * 1024)).unwrap();
    // systemd's own copy of the socket: it outlives every instance.
    let systemd = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = systemd.local_addr().unwrap();
    let mut bin = socket_activated(&systemd, &root, &["--write-limit", "64K"]);
    let mut r = raw_at(addr);
    login(&mut r);
    assert_eq!(r.cmd("TYPE I").0, 200);
    let data = r.pasv();
    let (code, text) = r.cmd("RETR f.bin");
    assert!(code == 150 || code == 125, "{text}");
    bin.signal(Signal::SIGTERM);
    // Until the drain has begun a new connection may still be served: wait for the 421.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        if first_line(&c) == "421 Server shutting down." {
            break;
        }
        assert!(Instant::now() < deadline, "no 421 during the drain");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read_all(data), pattern(256 * 1024), "the download finished");
    assert_eq!(r.reply().0, 226);
    let st = bin.wait_exit(Duration::from_secs(30)).expect("exits");
    assert_eq!(st.code(), Some(0), "{}", bin.log());
    // The socket is still systemd's: a client now waits in its queue...
    let queued = TcpStream::connect(addr).expect("the socket stayed open");
    queued.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // ...and the next instance greets it.
    let _next = socket_activated(&systemd, &root, &[]);
    assert!(first_line(&queued).starts_with("220"));
}

/// The command lines of the sample service files under scripts/deploy.
fn sample_command_lines() -> Vec<(String, Vec<String>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/deploy");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let mut out = Vec::new();
    for line in read("inetd.conf").lines() {
        let line = line.trim_start_matches('#');
        let f = words(line);
        if f.len() > 7 && f[0] == "ftp" {
            out.push(("inetd.conf".to_string(), f[7..].to_vec()));
        }
    }
    for x in ["xinetd-ftpdlib", "xinetd-ftpdlib-wait"] {
        let text = read(x);
        let args = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server_args"))
            .map(|v| v.trim_start_matches([' ', '=']))
            .unwrap();
        out.push((x.to_string(), words(args)));
    }
    let unit = read("ftpdlib.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    out.push(("ftpdlib.service".to_string(), words(exec)[1..].to_vec()));
    let plist = read("org.ftpdlib.ftpd.plist");
    let array = plist
        .split("<key>ProgramArguments</key>")
        .nth(1)
        .and_then(|r| r.split("</array>").next())
        .unwrap();
    let args: Vec<String> = array
        .split("<string>")
        .skip(1)
        .filter_map(|s| s.split("</string>").next().map(String::from))
        .collect();
    out.push(("org.ftpdlib.ftpd.plist".to_string(), args[1..].to_vec()));
    out
}

#[test]
fn sample_service_files_are_valid_command_lines() {
    let lines = sample_command_lines();
    assert!(lines.len() >= 6, "{lines:?}");
    for (file, args) in &lines {
        match ftpdlib::cli::parse_args(args.iter().map(std::ffi::OsString::from)) {
            Ok(ftpdlib::cli::Parsed::Run(o)) => {
                if file.contains("wait") {
                    assert!(o.inetd_wait && o.idle_timeout == 600, "{file}");
                }
            }
            other => panic!("{file}: {args:?}: {other:?}"),
        }
    }
}

/// The inetd.conf "nowait" line, run as inetd would run it (as root, so `--user nobody`
/// takes effect), with the served directory swapped for a temp dir.
#[test]
fn sample_inetd_conf_line_serves() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: the sample line switches to 'nobody', which needs root");
        return;
    }
    let (_, args) = sample_command_lines()
        .into_iter()
        .find(|(f, a)| f == "inetd.conf" && a.iter().any(|x| x == "-I"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hi").unwrap();
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            if a == "/srv/ftp" {
                dir.path().to_string_lossy().into_owned()
            } else {
                a
            }
        })
        .collect();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut child = Command::new(BIN)
        .args(&args)
        .stdin(Stdio::from(OwnedFd::from(conn)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut r = raw_from(client);
    assert_eq!(r.cmd("USER anonymous").0, 331);
    assert_eq!(r.cmd("PASS guest@").0, 230);
    assert_eq!(retr(&mut r, "hello.txt"), b"hi");
    assert_eq!(r.cmd("QUIT").0, 221);
    let deadline = Instant::now() + IO_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// inetd "nowait": SIGTERM ends an idle session with 421 and the process exits 0.
#[test]
fn inetd_nowait_sigterm_says_421() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut child = Command::new(BIN)
        .args(["-I", "-u", USER, "-P", PASS, "-d"])
        .arg(dir.path())
        .stdin(Stdio::from(OwnedFd::from(conn)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut r = raw_from(client);
    login(&mut r);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let (code, text) = r.reply();
    assert_eq!(code, 421, "{text}");
    let deadline = Instant::now() + IO_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

/// A control connection over a Unix socket, driven line by line.
struct UnixCtl {
    w: std::os::unix::net::UnixStream,
    r: std::io::BufReader<std::os::unix::net::UnixStream>,
}

impl UnixCtl {
    fn reply(&mut self) -> (u32, String) {
        use std::io::BufRead;
        let mut line = String::new();
        self.r.read_line(&mut line).expect("read reply");
        assert!(line.len() >= 4, "short reply {line:?}");
        (line[..3].parse().expect("reply code"), line)
    }

    fn cmd(&mut self, line: &str) -> (u32, String) {
        use std::io::Write;
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    /// The data port of a 227 or 229 reply.
    fn port_of(text: &str) -> u16 {
        if let Some(i) = text.find("(|||") {
            return text[i + 4..].split('|').next().unwrap().parse().unwrap();
        }
        let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
        let n: Vec<u16> = inner.split(',').map(|x| x.parse().unwrap()).collect();
        n[4] * 256 + n[5]
    }

    /// RETR through a passive connection set up by `how` (PASV or EPSV).
    fn retr(&mut self, how: &str, name: &str) -> Vec<u8> {
        let (code, text) = self.cmd(how);
        assert!(code == 227 || code == 229, "{text}");
        let data = TcpStream::connect(("127.0.0.1", Self::port_of(&text))).unwrap();
        data.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let (code, text) = self.cmd(&format!("RETR {name}"));
        assert!(code == 150 || code == 125, "{text}");
        let got = read_all(data);
        assert_eq!(self.reply().0, 226);
        got
    }
}

/// inetd "nowait" with stdin a Unix socketpair (what socat's `EXEC:` hands over): the
/// client's address is unknown, which is no error. Passive mode works (the data channel is
/// TCP on this host: PASV says 0,0,0,0, which clients replace with the control connection's
/// host); PORT is refused, since a connection to a client address nobody knows could be a
/// bounce (RFC 2577).
#[test]
fn inetd_nowait_over_a_unix_socketpair() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.bin"), pattern(70_000)).unwrap();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut child = Command::new(BIN)
        .args(["-I", "-d"])
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut c = UnixCtl {
        w: ours.try_clone().unwrap(),
        r: std::io::BufReader::new(ours),
    };
    let (code, text) = c.reply();
    assert_eq!(code, 220, "{text}");
    assert_eq!(c.cmd("USER anonymous").0, 331);
    assert_eq!(c.cmd("PASS guest@").0, 230);
    assert_eq!(c.cmd("TYPE I").0, 200);
    assert_eq!(c.retr("EPSV", "f.bin"), pattern(70_000));
    assert_eq!(c.retr("PASV", "f.bin"), pattern(70_000));
    let (code, text) = c.cmd("PORT 127,0,0,1,200,10");
    assert_eq!(code, 501, "{text}");
    assert_eq!(c.cmd("QUIT").0, 221);
    let deadline = Instant::now() + IO_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("FTP session opened"), "{err}");
}

/// Runs `socat TCP-LISTEN:PORT,bind=127.0.0.1,OPTIONS EXEC:…` (a recipe with its port
/// replaced by a free one and bound to loopback) and returns it once it accepts.
fn socat(listen_opts: &str, exec: &str, cwd: &std::path::Path) -> (std::process::Child, u16) {
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("socat")
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,{listen_opts}"))
            .arg(exec)
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run socat");
        let deadline = Instant::now() + IO_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break; // the port was taken meanwhile: try another
            }
            // A probe connection would start a session: look for the listener instead.
            let listening = std::fs::read_to_string("/proc/net/tcp")
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains(&format!("0100007F:{port:04X} 00000000:0000 0A")));
            if listening {
                return (child, port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("socat did not start");
}

/// Logs in anonymously through socat and downloads `name` in both passive modes.
fn fetch_through_socat(port: u16, name: &str) -> Vec<u8> {
    let mut c = FtpStream::connect(("127.0.0.1", port)).unwrap();
    c.get_ref().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.login("anonymous", "guest@").unwrap();
    c.transfer_type(FileType::Binary).unwrap();
    let a = c.retr_as_buffer(name).unwrap().into_inner();
    c.set_mode(Mode::ExtendedPassive);
    let b = c.retr_as_buffer(name).unwrap().into_inner();
    assert_eq!(a, b);
    c.quit().unwrap();
    a
}

/// `socat TCP-LISTEN:P,fork EXEC:"ftpdlib -I"`: each connection is served by an inetd
/// "nowait" process over socat's socketpair; socat's SOCAT_PEERADDR/SOCAT_SOCKADDR give
/// the session the client's and the local address, so PASV and the RFC 2577 checks work.
#[test]
fn socat_exec_ftpdlib_inetd() {
    if !tool("socat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.bin"), pattern(50_000)).unwrap();
    let exec = format!("EXEC:\"{BIN} -I -d {}\"", dir.path().display());
    let (mut s, port) = socat("fork", &exec, dir.path());
    assert_eq!(fetch_through_socat(port, "f.bin"), pattern(50_000));
    assert_eq!(fetch_through_socat(port, "f.bin"), pattern(50_000));
    let _ = s.kill();
    let _ = s.wait();
}

/// The socat recipe in demo/inetd_ftpd.rs, run as written (on a free port, bound to
/// loopback) from the crate's directory, which the example serves.
#[test]
fn socat_recipe_of_the_inetd_demo() {
    if !tool("socat") {
        return;
    }
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = std::fs::read_to_string(manifest.join("demo/inetd_ftpd.rs")).unwrap();
    let recipe = demo
        .lines()
        .find_map(|l| l.split('`').find(|w| w.starts_with("socat ")))
        .expect("a socat recipe in demo/inetd_ftpd.rs");
    let words: Vec<&str> = recipe.split_whitespace().collect();
    assert_eq!(words.len(), 3, "{recipe}");
    let listen_opts = words[1]
        .split_once(',')
        .map(|(_, o)| o)
        .expect("TCP-LISTEN:PORT,OPTIONS");
    let example = words[2]
        .trim_start_matches("EXEC:")
        .split_whitespace()
        .next()
        .unwrap();
    if !manifest.join(example).exists() {
        // `cargo test` builds the examples; `cargo test --test inetd` alone does not.
        missing(&format!(
            "{example} not built (run `cargo build --examples`)"
        ));
        return;
    }
    let (mut s, port) = socat(listen_opts, words[2], manifest);
    let want = std::fs::read(manifest.join("Cargo.toml")).unwrap();
    assert_eq!(fetch_through_socat(port, "Cargo.toml"), want);
    let _ = s.kill();
    let _ = s.wait();
}
