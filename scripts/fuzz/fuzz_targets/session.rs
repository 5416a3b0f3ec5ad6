//! A whole session on an in-memory control connection: any byte string of control input
//! runs through the session state machine (dispatch, the command table, the transfer phases,
//! login and logout) without a panic, and every reply is a well-formed RFC 959 reply line.
//! Data connections are real loopback listeners (PASV/EPSV); PORT and EPRT are removed from
//! the table so no input makes the session connect anywhere.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ftpdlib::authorizers::DummyAuthorizer;
use ftpdlib::fuzzing::session::run_script;
use ftpdlib::handlers::FtpHandler;
use libfuzzer_sys::fuzz_target;

/// One handler per process: user `user`/`12345` (all permissions) and anonymous (read
/// only), at home in ftpdlib-fuzz-session-PID under the temporary directory, with timeouts
/// short enough that no input makes a run wait.
fn handler() -> Arc<FtpHandler> {
    static H: OnceLock<Arc<FtpHandler>> = OnceLock::new();
    H.get_or_init(|| {
        let home = std::env::temp_dir().join(format!("ftpdlib-fuzz-session-{}", std::process::id()));
        std::fs::create_dir_all(home.join("dir")).expect("home");
        std::fs::write(home.join("file"), b"0123456789\n").expect("file");
        let mut auth = DummyAuthorizer::new();
        auth.add_user("user", "12345", &home, "elradfmwMT").expect("user");
        auth.add_anonymous(&home, "elr").expect("anonymous");
        let mut h = FtpHandler::new(Arc::new(auth));
        h.auth_failed_timeout = Duration::ZERO;
        h.timeout = Some(Duration::from_millis(200));
        h.login_timeout = Some(Duration::from_millis(200));
        h.data_timeout = Some(Duration::from_millis(200));
        h.passive_accept_timeout = Duration::from_millis(50);
        h.commands.remove("PORT");
        h.commands.remove("EPRT");
        Arc::new(h)
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let out = run_script(handler(), data);
    assert!(out.starts_with(b"220 "), "the greeting comes first");
    assert!(out.ends_with(b"\r\n"), "replies end with CRLF");
    // RFC 959 §4.2: `ddd text`, or `ddd-text` … up to `ddd text` with the same code, no line
    // in between starting like a final line; a CR inside a line only as CR NUL (RFC 2640).
    let mut open: Option<[u8; 3]> = None;
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.ends_with(b"\r"), "every line ends with CRLF: {line:?}");
        let body = &line[..line.len() - 1];
        let lone_cr = body
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\r' && body.get(i + 1) != Some(&0));
        assert!(!lone_cr, "a CR inside a line travels as CR NUL: {line:?}");
        let code = (body.len() >= 4 && body[..3].iter().all(u8::is_ascii_digit))
            .then(|| ([body[0], body[1], body[2]], body[3]));
        match (open, code) {
            (None, Some((c, b'-'))) => open = Some(c),
            (None, Some((_, b' '))) => {}
            (None, _) => panic!("not a reply line: {line:?}"),
            (Some(o), Some((c, b' '))) => {
                assert_eq!(o, c, "a multi-line reply ends with its own code: {line:?}");
                open = None;
            }
            (Some(_), _) => {}
        }
    }
    assert!(open.is_none(), "every multi-line reply is ended");
});
