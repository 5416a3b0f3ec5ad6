//! What an operator sees: the per-command log lines, session and server stats, the
//! Prometheus endpoint, xferlog, log files and SIGHUP reloads.

mod common;
use common::*;
use std::io::Write;

/// At the default level, one line per state-changing command with its reply code and the
/// virtual path, transfers with bytes and seconds, failed commands with code and text; no
/// bare `filesystem error` line that names neither the command nor the path.
#[test]
fn admin_log_names_command_path_and_code() {
    let b = BinServer::start(&[]);
    std::fs::write(b.root.join("f.txt"), b"hello").unwrap();
    let mut r = raw_at(b.addr);
    assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 230);
    assert_eq!(r.cmd("TYPE I").0, 200);
    assert_eq!(r.cmd("MKD d").0, 257);
    assert_eq!(r.cmd("RNFR f.txt").0, 350);
    assert_eq!(r.cmd("RNTO g.txt").0, 250);
    assert_eq!(r.cmd("SITE CHMOD 640 g.txt").0, 200);
    assert_eq!(r.cmd("MFMT 20200102030405 g.txt").0, 213);
    let d = r.pasv();
    assert_eq!(r.cmd("RETR g.txt").0, 125);
    assert_eq!(read_all(d), b"hello");
    assert_eq!(r.reply().0, 226);
    let mut d = r.pasv();
    assert_eq!(r.cmd("STOR d/up.bin").0, 125);
    d.write_all(&[7u8; 1000]).unwrap();
    drop(d);
    assert_eq!(r.reply().0, 226);
    assert_eq!(r.cmd("DELE d/up.bin").0, 250);
    assert_eq!(r.cmd("DELE nope.txt").0, 550);
    assert_eq!(r.cmd("RMD d").0, 250);
    assert_eq!(r.cmd("RETR nope.txt").0, 550);
    assert_eq!(r.cmd("QUIT").0, 221);
    let prefix = "-[user] ";
    for want in [
        "MKD /d 257",
        "RNFR /f.txt 350",
        "RNTO /g.txt 250",
        "SITE CHMOD 640 /g.txt 200",
        "MFMT 20200102030405 /g.txt 213",
        "RETR /g.txt 226 completed=1 bytes=5 seconds=",
        "STOR /d/up.bin 226 completed=1 bytes=1000 seconds=",
        "DELE /d/up.bin 250",
        "DELE /nope.txt 550 'No such file or directory.'",
        "RMD /d 250",
        "RETR /nope.txt 550 'No such file or directory.'",
    ] {
        let line = format!("{prefix}{want}");
        assert!(b.wait_log(&line), "{line:?} missing from:\n{}", b.log());
    }
    assert!(b.wait_log("logged out"), "{}", b.log());
    assert!(!b.log().contains("filesystem error"), "{}", b.log());
}
