//! A panicking command under the Fork model ends only its session (421), which needs a
//! custom command, so not the CLI binary: this test (no libtest harness, so `main` runs on
//! the only thread) re-executes itself as a single-threaded Fork server and drives it.

mod common;
use std::sync::Arc;

use common::*;
use ftpdlib::authorizers::DummyAuthorizer;
use ftpdlib::handlers::{Command, FtpHandler};
use ftpdlib::servers::MultiprocessFtpServer;

const HELPER: &str = "FTPDLIB_FORK_PANIC_HELPER";

/// The re-executed process: a Fork server with a `BOOM` command that panics.
fn helper(root: std::ffi::OsString) {
    let mut auth = DummyAuthorizer::new();
    auth.add_user(USER, PASS, &root, "elradfmwMT").unwrap();
    let mut h = FtpHandler::new(Arc::new(auth));
    h.add_command(
        Command::new("BOOM", "Syntax: BOOM (panics).", |_, _| {
            panic!("BOOM on purpose")
        })
        .auth(false),
    );
    let mut server = MultiprocessFtpServer::new("127.0.0.1:0", h).unwrap();
    server.stop_on_signals().unwrap();
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

fn main() {
    if let Some(root) = std::env::var_os(HELPER) {
        return helper(root);
    }
    // `cargo test -- --list` and filters: behave like a one-test harness.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("fork_panic_ends_only_that_session: test");
        return;
    }
    if let Some(filter) = args.iter().find(|a| !a.starts_with('-')) {
        if !"fork_panic_ends_only_that_session".contains(filter.as_str()) {
            return;
        }
    }
    fork_panic_ends_only_that_session();
    println!("test fork_panic_ends_only_that_session ... ok");
}
