//! Security: the jail (`..`, absolute paths, symlinks, NUL bytes), bounce protection,
//! line-length limits, bad input answered without disturbing the session.

mod common;
use common::*;
use ftpdlib::servers::Executor;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;

fn dotdot_and_absolute_paths_stay_inside(ex: Executor) {
    let s = start(ex);
    let outside = s
        .dir
        .path()
        .parent()
        .unwrap()
        .join(format!("ftpdlib-outside-{}", std::process::id()));
    std::fs::write(&outside, b"secret").ok();
    let mut c = s.login();
    c.cwd("../../../..").unwrap();
    assert_eq!(c.pwd().unwrap(), "/");
    assert!(c.retr_as_buffer("../../etc/passwd").is_err());
    assert!(c.retr_as_buffer("/etc/passwd").is_err());
    c.put_file("../escape.txt", &mut &b"x"[..]).unwrap();
    assert!(
        s.path("escape.txt").exists(),
        "'..' at the root is the root"
    );
    assert!(!s.root.parent().unwrap().join("escape.txt").exists());
    let mut r = s.raw_login();
    r.cmd("CWD /../../");
    assert_eq!(
        r.cmd("PWD").1.trim_end(),
        "257 \"/\" is the current directory."
    );
    // A backslash is a plain character on Unix, never a separator.
    assert_eq!(r.cmd("CWD ..\\..\\etc").0, 550);
    let _ = std::fs::remove_file(outside);
}

fn symlinks_out_of_home_are_refused(ex: Executor) {
    let s = start(ex);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    symlink(outside.path().join("secret"), s.path("link")).unwrap();
    symlink(outside.path(), s.path("dirlink")).unwrap();
    symlink(outside.path().join("not-yet"), s.path("dangling")).unwrap();
    std::fs::create_dir(s.path("in")).unwrap();
    symlink("in", s.path("inlink")).unwrap();
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let (code, text) = r.cmd("RETR link");
    assert_eq!(code, 550);
    assert!(
        text.contains("points to a path which is outside the user's root directory"),
        "{text}"
    );
    assert_eq!(r.cmd("CWD dirlink").0, 550);
    assert_eq!(r.cmd("SIZE dirlink/secret").0, 550);
    assert_eq!(r.cmd("LIST dirlink").0, 550);
    assert_eq!(
        r.cmd("STOR dangling").0,
        550,
        "a dangling link cannot create a file outside"
    );
    assert!(!outside.path().join("not-yet").exists());
    assert_eq!(r.cmd("DELE link").0, 550);
    assert_eq!(r.cmd("CWD inlink").0, 250, "links inside the home work");
}

fn nul_bytes_are_refused(ex: Executor) {
    let s = start(ex);
    s.write("a", b"x");
    let mut r = s.raw_login();
    r.send_bytes(b"SIZE a\0/../../etc/passwd\r\n");
    assert_eq!(r.reply().0, 501);
    r.send_bytes(b"MKD x\0y\r\n");
    assert_eq!(r.reply().0, 501);
    assert_eq!(r.cmd("NOOP").0, 200);
}

fn port_bounce_protection(ex: Executor) {
    let s = start(ex);
    let mut r = s.raw_login();
    let (code, text) = r.cmd("PORT 10,1,2,3,200,10");
    assert_eq!(code, 501);
    assert!(
        text.contains("Rejected data connection to foreign address 10.1.2.3:51210."),
        "{text}"
    );
    assert_eq!(
        r.cmd("EPRT |1|127.0.0.2|5000|").0,
        501,
        "another loopback address is foreign"
    );
    let (code, text) = r.cmd("PORT 127,0,0,1,0,21");
    assert_eq!(code, 501);
    assert!(text.contains("privileged port"), "{text}");
    assert_eq!(r.cmd("PORT 1,2,3").0, 501);
    assert_eq!(r.cmd("PORT 300,1,1,1,1,1").0, 501);
    assert_eq!(r.cmd("EPRT |9|1.2.3.4|5|").0, 501);
    assert_eq!(r.cmd("EPRT garbage").0, 501);
    // Nothing listening: 425.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert_eq!(r.cmd(&format!("EPRT |1|127.0.0.1|{port}|")).0, 425);
}

fn permitted_foreign_and_privileged(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| {
            h.permit_foreign_addresses = true;
            h.permit_privileged_ports = true;
        })
        .start();
    s.write("f", b"fxp");
    let mut r = s.raw_login();
    // A privileged port is allowed now: nothing listens on port 1, so the connection itself
    // fails (425), where the default configuration refuses the command (501).
    assert_eq!(r.cmd("PORT 127,0,0,1,0,1").0, 425);
    // A foreign address (127.0.0.2 for a client on 127.0.0.1) is allowed too (FXP).
    let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (code, text) = r.cmd(&format!("PORT 127,0,0,2,{},{}", port >> 8, port & 0xff));
    assert_eq!(
        (code, text.trim_end()),
        (200, "200 Active data connection established.")
    );
    let (conn, _) = l.accept().unwrap();
    assert_eq!(r.cmd("RETR f").0, 125);
    assert_eq!(read_all(conn), b"fxp");
    assert_eq!(r.reply().0, 226);
}

fn passive_connection_from_foreign_address_is_dropped(ex: Executor) {
    let s = start(ex);
    s.write("f", b"mine");
    let mut r = s.raw_login();
    let (_, text) = r.cmd("PASV");
    let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
    let n: Vec<u16> = inner.split(',').map(|x| x.parse().unwrap()).collect();
    let port = n[4] * 256 + n[5];
    // An intruder from 127.0.0.2 connects first.
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 2, 0)).unwrap();
    connect(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port)).unwrap();
    let intruder = std::net::TcpStream::from(fd);
    intruder
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let real = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let code = r.cmd("RETR f").0;
    assert!(code == 125 || code == 150);
    assert_eq!(read_all(real), b"mine");
    assert_eq!(r.reply().0, 226);
    assert_eq!(read_all(intruder), b"", "the intruder got nothing");
}

fn long_lines_and_junk(ex: Executor) {
    let s = start(ex);
    let mut r = s.raw_login();
    let long = format!("NOOP {}", "x".repeat(10_000));
    let (code, text) = r.cmd(&long);
    assert_eq!((code, text.trim_end()), (500, "500 Command too long."));
    assert_eq!(r.cmd("NOOP").0, 200, "the session stays usable");
    let (code, text) = r.cmd("FOO bar");
    assert_eq!(
        (code, text.trim_end()),
        (500, "500 Command \"FOO\" not understood.")
    );
    assert_eq!(r.cmd("SITE FOO").0, 500);
    assert_eq!(r.cmd("SITE").0, 501);
    // RFC 959 commands recognized but not implemented: 502 (unknown verbs: 500).
    assert_eq!(r.cmd("ACCT x").1.trim_end(), "502 Command not implemented.");
    assert_eq!(r.cmd("SMNT /x").0, 502);
    assert_eq!(r.cmd("").0, 500);
    r.send_bytes(b"\xff\xfe\xfd garbage\r\n");
    assert_eq!(r.reply().0, 500);
    r.send_bytes(b"RETR \xc3\x28\r\n");
    assert_eq!(r.reply().0, 550, "undecodable names are just names");
    assert_eq!(r.cmd("NOOP").0, 200);
    // A second session is not disturbed by any of it.
    assert_eq!(s.raw_login().cmd("NOOP").0, 200);
}

fn non_utf8_names_round_trip(ex: Executor) {
    let s = start(ex);
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(s.root.join(name), b"latin").unwrap();
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let d = r.pasv();
    assert_eq!(r.cmd("NLST").0, 125);
    assert_eq!(read_all(d), b"caf\xe9.txt\r\n");
    r.reply();
    r.send_bytes(b"SIZE caf\xe9.txt\r\n");
    assert_eq!(r.reply().1.trim_end(), "213 5");
}

/// A FIFO planted in the served tree (by a local user) must not block a session: RETR and
/// STOR refuse anything but a regular file, and the session goes on.
fn fifos_never_block_a_session(ex: Executor) {
    let s = start(ex);
    nix::unistd::mkfifo(&s.path("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut r = s.raw_login();
    r.cmd("TYPE I");
    let (code, text) = r.cmd("RETR fifo");
    assert_eq!(code, 550, "{text}");
    let (code, text) = r.cmd("STOR fifo");
    assert_eq!(code, 550, "{text}");
    assert_eq!(r.cmd("NOOP").0, 200);
}

models!(
    permitted_foreign_and_privileged;
    bin: fifos_never_block_a_session, dotdot_and_absolute_paths_stay_inside, symlinks_out_of_home_are_refused, nul_bytes_are_refused, port_bounce_protection, passive_connection_from_foreign_address_is_dropped, long_lines_and_junk, non_utf8_names_round_trip,
);

/// A login during a streaming listing must not leave the new user inside the old user's
/// jail: the listing borrows the session's filesystem and hands it back when it ends.
#[test]
fn relogin_during_a_listing_gets_its_own_filesystem() {
    let s = builder()
        .auth(|a, root| {
            std::fs::create_dir_all(root.join("anon")).unwrap();
            std::fs::create_dir_all(root.join("home")).unwrap();
            a.add_anonymous(root.join("anon"), "elr").unwrap();
            a.add_user(USER, PASS, root.join("home"), "elradfmwMT")
                .unwrap();
        })
        .handler(|h| h.write_limit = 32 * 1024)
        .start();
    for i in 0..1500 {
        s.write(&format!("anon/entry-with-a-longish-name-{i:05}"), b"");
    }
    let mut r = s.raw();
    r.cmd("USER anonymous");
    assert_eq!(r.cmd("PASS x").0, 230);
    let d = r.pasv();
    assert_eq!(r.cmd("NLST").0, 125);
    // Log in as another user while the listing streams (answered at once, as pyftpdlib does).
    assert_eq!(r.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(r.cmd(&format!("PASS {PASS}")).0, 230);
    let listing = read_all(d);
    assert!(!listing.is_empty());
    assert_eq!(r.reply().0, 226);
    // The new user works in its own home, not in anonymous's.
    r.cmd("TYPE I");
    let mut d = r.pasv();
    assert_eq!(r.cmd("STOR mine.txt").0, 125);
    std::io::Write::write_all(&mut d, b"x").unwrap();
    drop(d);
    assert_eq!(r.reply().0, 226);
    assert!(s.path("home/mine.txt").exists());
    assert!(
        !s.path("anon/mine.txt").exists(),
        "the new user wrote into the old user's jail"
    );
}
