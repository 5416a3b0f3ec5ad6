//! Callbacks (pyftpdlib's on_* hooks) and custom commands.

mod common;
use common::*;
use ftpdlib::authorizers::Perm;
use ftpdlib::handlers::stats::{TransferResult, TransferStats};
use ftpdlib::handlers::{Arg, Callbacks, Command};
use ftpdlib::servers::Executor;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>, Gate);

/// Holds a blocking call (a slow database) until the test opens it, at most a minute: a
/// test then knows the call is still blocked, whatever the machine's speed.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<(bool, bool)>, std::sync::Condvar)>);

impl Gate {
    /// Blocks until the gate opens (at most a minute).
    fn wait(&self) {
        let (state, cv) = &*self.0;
        let mut g = state.lock().unwrap();
        g.0 = true;
        cv.notify_all();
        let _ = cv
            .wait_timeout_while(g, Duration::from_secs(60), |(_, open)| !*open)
            .unwrap();
    }
    /// Waits until a call blocks at the gate (at most [`IO_TIMEOUT`]); true if one does.
    fn entered(&self) -> bool {
        let (state, cv) = &*self.0;
        let g = state.lock().unwrap();
        let (g, _) = cv
            .wait_timeout_while(g, IO_TIMEOUT, |(entered, _)| !*entered)
            .unwrap();
        g.0
    }
    fn open(&self) {
        self.0 .0.lock().unwrap().1 = true;
        self.0 .1.notify_all();
    }
}

impl Log {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    /// Waits until `event` is logged (the session thread logs after replying).
    fn wait_for(&self, event: &str) -> bool {
        let t = Instant::now();
        while t.elapsed() < IO_TIMEOUT {
            if self.events().iter().any(|e| e == event) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

struct Recorder(Log);

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

impl Callbacks for Recorder {
    fn on_connect(&mut self, _peer: std::net::SocketAddr) {
        self.0.push("connect".into());
    }
    fn on_disconnect(&mut self) {
        self.0.push("disconnect".into());
    }
    fn on_login(&mut self, u: &str) {
        if u == "slow" {
            // A callback may block (a database call) without stalling other sessions.
            self.0 .1.wait();
        }
        self.0.push(format!("login {u}"));
    }
    fn on_login_failed(&mut self, u: &str, p: &str) {
        self.0.push(format!("login_failed {u} {p}"));
    }
    fn on_logout(&mut self, u: &str) {
        self.0.push(format!("logout {u}"));
    }
    fn on_file_sent(&mut self, p: &Path) {
        self.0.push(format!("sent {}", name(p)));
    }
    fn on_file_received(&mut self, p: &Path) {
        self.0.push(format!("received {}", name(p)));
    }
    fn on_incomplete_file_sent(&mut self, p: &Path) {
        self.0.push(format!("incomplete_sent {}", name(p)));
    }
    fn on_incomplete_file_received(&mut self, p: &Path) {
        self.0.push(format!("incomplete_received {}", name(p)));
    }
}

fn recorded(ex: Executor, log: &Log) -> Server {
    let l = log.clone();
    builder()
        .executor(ex)
        .auth(|a, root| {
            a.add_user(USER, PASS, root, "elradfmwMT").unwrap();
            a.add_user("slow", "pw", root, "elr").unwrap();
        })
        .handler(move |h| {
            h.write_limit = 128 * 1024;
            h.set_callbacks(move || Recorder(l.clone()));
        })
        .start()
}

fn every_callback_fires(ex: Executor) {
    let log = Log::default();
    let s = recorded(ex, &log);
    s.write("f", &pattern(1000));
    s.write("big", &pattern(1 << 20));
    let mut c = s.connect();
    assert!(c.login(USER, "bad").is_err());
    c.login(USER, PASS).unwrap();
    c.transfer_type(FileType::Binary).unwrap();
    c.retr_as_buffer("f").unwrap();
    c.put_file("g", &mut &b"data"[..]).unwrap();
    // An aborted download and an aborted upload.
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let _d = r.pasv();
    assert_eq!(r.cmd("RETR big").0, 125);
    r.send("ABOR");
    assert_eq!(r.reply().0, 426);
    r.reply();
    let mut d = r.pasv();
    assert_eq!(r.cmd("STOR part").0, 125);
    d.write_all(b"abc").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    r.send("ABOR");
    assert_eq!(r.reply().0, 426);
    r.reply();
    c.quit().unwrap();
    assert!(log.wait_for("disconnect"));
    let ev = log.events();
    for want in [
        "connect",
        "login_failed user bad",
        "login user",
        "sent f",
        "received g",
        "incomplete_sent big",
        "incomplete_received part",
        "logout user",
        "disconnect",
    ] {
        assert!(ev.iter().any(|e| e == want), "missing {want:?} in {ev:?}");
    }
}

fn blocking_callback_does_not_stall_others(ex: Executor) {
    let log = Log::default();
    let s = recorded(ex, &log);
    let addr = s.addr;
    let slow = std::thread::spawn(move || {
        let mut c = FtpStream::connect(addr).unwrap();
        c.login("slow", "pw").unwrap();
    });
    assert!(log.1.entered(), "the slow callback never ran");
    let mut c = s.login();
    c.noop().unwrap();
    // Served while the other session's callback is still blocked.
    assert!(
        !log.events().iter().any(|e| e == "login slow"),
        "a second session waited behind a blocking callback: {:?}",
        log.events()
    );
    log.1.open();
    slow.join().unwrap();
    assert!(log.wait_for("login slow"));
}

/// An authorizer whose lookups block (a slow database) for the user "slow", until its
/// gate opens.
struct SlowAuth(ftpdlib::authorizers::DummyAuthorizer, Gate);

impl ftpdlib::authorizers::Authorizer for SlowAuth {
    fn validate_authentication(
        &self,
        u: &str,
        p: &str,
        peer: std::net::SocketAddr,
    ) -> Result<(), ftpdlib::AuthenticationFailed> {
        if u == "slow" {
            self.1.wait();
        }
        self.0.validate_authentication(u, p, peer)
    }
    fn get_home_dir(&self, u: &str) -> Result<std::path::PathBuf, ftpdlib::AuthorizerError> {
        self.0.get_home_dir(u)
    }
    fn has_perm(&self, u: &str, perm: Perm, path: Option<&Path>) -> bool {
        self.0.has_perm(u, perm, path)
    }
    fn get_perms(&self, u: &str) -> ftpdlib::authorizers::PermSet {
        self.0.get_perms(u)
    }
    fn get_msg_login(&self, u: &str) -> String {
        self.0.get_msg_login(u)
    }
    fn get_msg_quit(&self, u: &str) -> String {
        self.0.get_msg_quit(u)
    }
}

fn blocking_authorizer_does_not_stall_others(ex: Executor) {
    let gate = Gate::default();
    let g = gate.clone();
    let s = builder()
        .executor(ex)
        .handler(move |h| {
            let root = h.authorizer.get_home_dir(USER).unwrap();
            let mut d = ftpdlib::authorizers::DummyAuthorizer::new();
            d.add_user(USER, PASS, &root, "elr").unwrap();
            d.add_user("slow", "pw", &root, "elr").unwrap();
            h.authorizer = Arc::new(SlowAuth(d, g));
        })
        .start();
    let addr = s.addr;
    let slow = std::thread::spawn(move || {
        let mut c = FtpStream::connect(addr).unwrap();
        c.login("slow", "pw").unwrap();
    });
    assert!(gate.entered(), "the slow lookup never ran");
    let mut c = s.login();
    c.noop().unwrap();
    // The second login went through while the slow lookup is still blocked (it cannot
    // end before the gate opens).
    assert!(!slow.is_finished(), "the slow lookup did not block");
    gate.open();
    slow.join().unwrap();
}

fn custom_site_command(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| {
            h.add_command(
                Command::new(
                    "SITE USAGE",
                    "Syntax: SITE USAGE (show disk usage).",
                    |s, _req| {
                        let user = s.username().unwrap_or("?").to_string();
                        s.reply(200, &format!("{user} uses 42 bytes."))
                    },
                )
                .arg(Arg::Forbidden),
            );
            h.add_command(
                Command::new("SITE TOUCH", "Syntax: SITE TOUCH <SP> path.", |s, req| {
                    let path = req.path.clone().unwrap();
                    std::fs::write(&path, b"")?;
                    s.reply(200, "Touched.")
                })
                .arg(Arg::Required)
                .perm(Some(Perm::Store)),
            );
        })
        .start();
    let mut r = s.raw();
    assert_eq!(r.cmd("SITE USAGE").0, 530, "login required by default");
    r.cmd("USER anonymous");
    r.cmd("PASS x");
    assert_eq!(
        r.cmd("SITE USAGE").1.trim_end(),
        "200 anonymous uses 42 bytes."
    );
    assert_eq!(r.cmd("SITE USAGE now").0, 501);
    assert_eq!(
        r.cmd("SITE TOUCH f").1.trim_end(),
        "550 Not enough privileges."
    );
    let (code, text) = r.cmd("SITE HELP");
    assert_eq!(code, 214);
    assert!(
        text.contains(" USAGE\r\n") && text.contains(" CHMOD\r\n"),
        "{text}"
    );
    assert_eq!(
        r.cmd("SITE HELP USAGE").1.trim_end(),
        "214 Syntax: SITE USAGE (show disk usage)."
    );
    let mut u = s.raw_login();
    assert_eq!(u.cmd("SITE TOUCH t").1.trim_end(), "200 Touched.");
    assert!(s.path("t").exists());
    assert_eq!(
        u.cmd("SITE TOUCH ../../x").0,
        200,
        "the path argument is jailed"
    );
    assert!(s.path("x").exists());
}

fn help_feat_syst(ex: Executor) {
    let s = start(ex);
    let mut r = s.raw();
    let (code, text) = r.cmd("HELP");
    assert_eq!(code, 214);
    assert!(text.contains("RETR") && text.contains("MLSD"), "{text}");
    assert_eq!(
        r.cmd("HELP retr").1.trim_end(),
        "214 Syntax: RETR <SP> file-name (retrieve a file)."
    );
    assert_eq!(r.cmd("HELP nope").0, 501);
    let (code, text) = r.cmd("FEAT");
    assert_eq!(code, 211);
    for f in [
        "EPRT",
        "EPSV",
        "MDTM",
        "MFMT",
        "REST STREAM",
        "SIZE",
        "TVFS",
        "UTF8",
    ] {
        assert!(
            text.contains(&format!("\r\n {f}\r\n")),
            "FEAT lacks {f}: {text}"
        );
    }
    assert!(
        text.contains(" MLST type*;perm*;size*;modify*;unique*;unix.mode;unix.uid;unix.gid;"),
        "{text}"
    );
    assert!(text.ends_with("211 End FEAT.\r\n"));
    assert_eq!(r.cmd("SYST").1.trim_end(), "215 UNIX Type: L8");
    assert_eq!(
        r.cmd("NOOP").1.trim_end(),
        "200 I successfully did nothing'."
    );
    assert_eq!(
        r.cmd("OPTS UTF8 ON").0,
        530,
        "OPTS needs login, as in pyftpdlib"
    );
    r.cmd("USER anonymous");
    r.cmd("PASS x");
    assert_eq!(r.cmd("OPTS UTF8 ON").0, 200);
    assert_eq!(r.cmd("OPTS FOO").0, 501);
}

/// Records what `on_transfer_end` is told: who, which file, how much, how long.
struct Detailed(Log);

impl Callbacks for Detailed {
    fn on_transfer_end(&mut self, t: &TransferStats) {
        self.0.push(format!(
            "{} {} {} complete={} bytes={} timed={}",
            t.user,
            if t.upload { "up" } else { "down" },
            name(&t.path),
            t.result == TransferResult::Complete,
            t.bytes,
            t.duration > Duration::ZERO
        ));
    }
}

fn transfer_end_knows_who_how_much_and_how_long(ex: Executor) {
    let log = Log::default();
    let l = log.clone();
    let s = builder()
        .executor(ex)
        .handler(move |h| h.set_callbacks(move || Detailed(l.clone())))
        .start();
    s.write("f", &pattern(1000));
    s.write("big", &pattern(4 << 20));
    let mut c = s.login();
    c.transfer_type(FileType::Binary).unwrap();
    c.retr_as_buffer("f").unwrap();
    c.put_file("g", &mut &pattern(3000)[..]).unwrap();
    assert!(log.wait_for("user down f complete=true bytes=1000 timed=true"));
    assert!(log.wait_for("user up g complete=true bytes=3000 timed=true"));
    // A download cut short: incomplete, with the bytes that left before the ABOR.
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let _d = r.pasv();
    assert_eq!(r.cmd("RETR big").0, 125);
    r.send("ABOR");
    assert_eq!(r.reply().0, 426);
    r.reply();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10)
        && !log
            .events()
            .iter()
            .any(|e| e.starts_with("user down big complete=false"))
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ev = log.events();
    let cut = ev
        .iter()
        .find(|e| e.starts_with("user down big complete=false"));
    assert!(cut.is_some(), "{ev:?}");
    assert!(
        !cut.unwrap().contains(&format!("bytes={}", 4 << 20)),
        "an aborted download reports what left, not the whole file: {ev:?}"
    );
}

models!(
    transfer_end_knows_who_how_much_and_how_long,
    every_callback_fires,
    blocking_callback_does_not_stall_others,
    blocking_authorizer_does_not_stall_others,
    custom_site_command,
    help_feat_syst,
);
