//! Login, logout and account commands: USER, PASS, REIN, QUIT, max_login_attempts.

mod common;
use common::*;
use ftpdlib::servers::Executor;

fn login_and_wrong_password(ex: Executor) {
    let s = start(ex);
    let mut c = s.connect();
    assert!(c.login(USER, "wrong").is_err());
    c.login(USER, PASS).unwrap();
    assert_eq!(c.pwd().unwrap(), "/");
    c.quit().unwrap();
}

fn anonymous_is_read_only(ex: Executor) {
    let s = start(ex);
    s.write("f.txt", b"x");
    let mut c = s.anon();
    assert_eq!(c.retr_as_buffer("f.txt").unwrap().into_inner(), b"x");
    let err = c.put_file("new.txt", &mut &b"data"[..]).unwrap_err();
    assert!(err.to_string().contains("550"), "{err}");
    assert!(!s.path("new.txt").exists());
    assert!(c.mkdir("d").is_err());
}

fn replies_are_pyftpdlibs(ex: Executor) {
    let s = start(ex);
    let mut r = s.raw();
    assert_eq!(r.cmd("PASS x").0, 503, "PASS before USER");
    assert_eq!(r.cmd("PWD").0, 530);
    assert!(r.cmd("PWD").1.contains("Log in with USER and PASS first."));
    assert_eq!(r.cmd("USER nobody").0, 331);
    let (code, text) = r.cmd("PASS x");
    assert_eq!((code, text.trim_end()), (530, "530 Authentication failed."));
    assert_eq!(r.cmd("user user").0, 331, "verbs are case-insensitive");
    assert_eq!(r.cmd("pass 12345").0, 230);
    assert_eq!(r.cmd("PASS 12345").0, 503, "already authenticated");
    let (code, text) = r.cmd("USER anonymous");
    assert_eq!(code, 331);
    assert!(text.contains("flushed"), "{text}");
    assert_eq!(r.cmd("PASS me@x").0, 230);
    assert_eq!(r.cmd("REIN").0, 230);
    assert_eq!(r.cmd("PWD").0, 530, "REIN logs out");
    let (code, text) = r.cmd("QUIT");
    assert_eq!((code, text.trim_end()), (221, "221 Goodbye."));
    assert!(r.is_closed());
}

fn anonymous_refused_without_anonymous_user(ex: Executor) {
    let s = builder()
        .executor(ex)
        .auth(|a, root| a.add_user("bob", "pw", root, "elr").unwrap())
        .start();
    let mut r = s.raw();
    r.cmd("USER anonymous");
    let (code, text) = r.cmd("PASS x");
    assert_eq!(code, 530);
    assert!(text.contains("Anonymous access not allowed."), "{text}");
}

fn max_login_attempts_disconnects(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| h.max_login_attempts = 2)
        .start();
    let mut r = s.raw();
    r.cmd("USER user");
    assert_eq!(r.cmd("PASS bad").0, 530);
    r.cmd("USER user");
    let (code, text) = r.cmd("PASS bad");
    assert_eq!(code, 530);
    assert!(text.contains("Disconnecting"), "{text}");
    assert!(r.is_closed());
}

fn custom_login_message_and_quit(ex: Executor) {
    let s = builder()
        .executor(ex)
        .auth(|a, root| {
            a.add_user_with_msgs("bob", "pw", root, "elr", "Welcome bob.", "See you.")
                .unwrap()
        })
        .start();
    let mut r = s.raw();
    r.cmd("USER bob");
    assert_eq!(r.cmd("PASS pw").1.trim_end(), "230 Welcome bob.");
    assert_eq!(r.cmd("QUIT").1.trim_end(), "221 See you.");
}

/// An authorizer that decides only what it must: who, where, and what they may do.
struct Minimal(std::path::PathBuf);

impl ftpdlib::authorizers::Authorizer for Minimal {
    fn validate_authentication(
        &self,
        user: &str,
        password: &str,
        _peer: std::net::SocketAddr,
    ) -> Result<(), ftpdlib::AuthenticationFailed> {
        if user == "reader" && password == "pw" {
            Ok(())
        } else {
            Err(ftpdlib::AuthenticationFailed::new("Authentication failed."))
        }
    }
    fn get_home_dir(&self, _user: &str) -> Result<std::path::PathBuf, ftpdlib::AuthorizerError> {
        Ok(self.0.clone())
    }
    fn has_perm(
        &self,
        _user: &str,
        perm: ftpdlib::authorizers::Perm,
        _path: Option<&std::path::Path>,
    ) -> bool {
        !perm.is_write()
    }
}

fn three_methods_make_an_authorizer(ex: Executor) {
    let s = builder()
        .executor(ex)
        .handler(|h| {
            let root = h.authorizer.get_home_dir(USER).unwrap();
            h.authorizer = std::sync::Arc::new(Minimal(root));
        })
        .start();
    s.write("f", b"x");
    let mut r = s.raw();
    assert_eq!(r.cmd("USER reader").0, 331);
    assert_eq!(r.cmd("PASS pw").1, "230 Login successful.\r\n");
    // The permission facts come from has_perm: read letters only.
    let (code, text) = r.cmd("MLST f");
    assert_eq!(code, 250, "{text}");
    assert!(text.contains("perm=r;"), "{text}");
    assert_eq!(r.cmd("QUIT").1, "221 Goodbye.\r\n");
}

models!(
    three_methods_make_an_authorizer,
    anonymous_is_read_only,
    replies_are_pyftpdlibs,
    anonymous_refused_without_anonymous_user,
    max_login_attempts_disconnects,
    custom_login_message_and_quit;
    bin: login_and_wrong_password,
);
