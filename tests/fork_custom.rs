//! Fork-model tests whose configuration the CLI cannot express (a custom command, a
//! throttle): this test (no libtest harness, so `main` runs on the only thread) re-executes
//! itself as a single-threaded Fork server and drives it. A panicking command ends only its
//! session (421); SIGTERM lets a download in flight finish, closes idle sessions with 421
//! and exits 0.

mod common;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ftpdlib::authorizers::DummyAuthorizer;
use ftpdlib::handlers::{Command, FtpHandler};
use ftpdlib::servers::MultiprocessFtpServer;

const HELPER: &str = "FTPDLIB_FORK_TEST_HELPER";

/// The re-executed process: a Fork server with a `BOOM` command that panics.
fn helper(root: std::ffi::OsString) {
    let mut auth = DummyAuthorizer::new();
    auth.add_user(USER, PASS, &root, "elradfmwMT").unwrap();
    let mut h = FtpHandler::new(Arc::new(auth));
    h.write_limit = 256 * 1024;
    h.add_command(
        Command::new("BOOM", "Syntax: BOOM (panics).", |_, _| {
            panic!("BOOM on purpose")
        })
        .auth(false),
    );
    let mut server = MultiprocessFtpServer::new("127.0.0.1:0", h).unwrap();
    server.stop_on_signals().unwrap();
    server.shutdown_grace = Duration::from_secs(30);
    eprintln!(
        ">>> starting FTP server on {}, pid={} <<<",
        server.local_addrs()[0],
        std::process::id()
    );
    server.serve_forever().unwrap();
}

fn fork_panic_ends_only_that_session() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.env(HELPER, &root);
    let bin = BinServer::spawn(cmd, dir, root);
    let mut other = raw_at(bin.addr);
    assert_eq!(other.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(other.cmd(&format!("PASS {PASS}")).0, 230);
    let mut r = raw_at(bin.addr);
    let (code, text) = r.cmd("BOOM");
    assert_eq!(code, 421, "{text}");
    assert!(r.is_closed());
    assert_eq!(other.cmd("NOOP").0, 200, "another session is unaffected");
    let mut again = raw_at(bin.addr);
    assert_eq!(again.cmd("NOOP").0, 200, "the server still accepts");
}

fn fork_sigterm_lets_transfer_finish() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let big = pattern(512 * 1024);
    std::fs::write(root.join("big.bin"), &big).unwrap();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.env(HELPER, &root);
    let mut bin = BinServer::spawn(cmd, dir, root);
    let mut idle = raw_at(bin.addr);
    assert_eq!(idle.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(idle.cmd(&format!("PASS {PASS}")).0, 230);
    let mut r = raw_at(bin.addr);
    assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 230);
    assert_eq!(r.cmd("TYPE I").0, 200);
    let data = r.pasv();
    let (code, text) = r.cmd("RETR big.bin");
    assert!(code == 150 || code == 125, "{text}");
    bin.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(idle.reply().0, 421, "the idle session is closed at once");
    assert_eq!(read_all(data), big, "the download finished whole");
    assert_eq!(r.reply().0, 226);
    assert_eq!(r.reply().0, 421);
    let st = bin.wait_exit(Duration::from_secs(30)).expect("exits");
    assert_eq!(st.code(), Some(0), "{}", bin.log());
}

fn main() {
    if let Some(root) = std::env::var_os(HELPER) {
        return helper(root);
    }
    // `cargo test -- --list` and name filters: behave like a minimal harness.
    let tests: [(&str, fn()); 2] = [
        (
            "fork_panic_ends_only_that_session",
            fork_panic_ends_only_that_session,
        ),
        (
            "fork_sigterm_lets_transfer_finish",
            fork_sigterm_lets_transfer_finish,
        ),
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    let filter = args.iter().find(|a| !a.starts_with('-'));
    for (name, test) in tests {
        if filter.is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        test();
        println!("test {name} ... ok");
    }
}
