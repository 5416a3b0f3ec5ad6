//! Command dispatch: the only place for the checks every command shares, in pyftpdlib's
//! order and texts (`pre_process_command`): unknown → 500, argument rule → 501, not logged in
//! → 530, permission → 550; then the command runs. A path leading out of the root is refused
//! (550, pyftpdlib's text) by the operation itself, which resolves it beneath the root when
//! it runs: nothing here checks a path that a command would then open again by name. Before
//! the checks: an HTTP request before login closes the connection; after them: a new name
//! holding CR, LF or NUL → 553.

use std::io;

use super::session::Session;
use super::{Arg, Request};
use crate::proto;

/// RFC 959 commands ftpdlib recognizes but does not implement: 502 (RFC 959 §4.2, as vsftpd
/// answers), where pyftpdlib, not knowing them, says 500.
const NOT_IMPLEMENTED: &[&str] = &["ACCT", "SMNT"];

/// Commands that create the name they are given: a CR, LF or NUL in it is refused with 553
/// (RFC 959 "File name not allowed"), since every reply and listing that shows the name
/// would carry it.
const CREATES_NAME: &[&str] = &["MKD", "XMKD", "STOR", "APPE", "STOU", "RNTO"];

impl Session {
    /// Runs one raw command line.
    pub(crate) fn handle_line(&mut self, raw: &[u8]) -> io::Result<()> {
        let line = proto::clean_line(raw);
        let (mut verb, arg) = proto::split_command(&line);
        if verb == "PASS" {
            log::debug!("{} <- PASS ******", self.prefix);
        } else {
            log::debug!("{} <- {}", self.prefix, proto::log_escape(&line));
        }
        if !self.authenticated && proto::is_http_line(&verb) && self.h.commands.get(&verb).is_none()
        {
            return self.refuse_http(&line);
        }
        let mut arg = self.h.encoding.decode(&arg);
        if verb == "SITE" && !arg.is_empty() {
            let (sub, rest) = proto::split_command(&arg);
            verb = format!("SITE {sub}");
            arg = rest;
        }

        if !self.tls_precheck(&verb)? {
            return Ok(());
        }
        let cmd = match self.h.commands.get(&verb) {
            Some(c) => c,
            None if NOT_IMPLEMENTED.contains(&verb.as_str()) => {
                log::info!("{} {verb}: not implemented", self.prefix);
                return self.reply(502, "Command not implemented.");
            }
            None => {
                // Clients that send ABOR/STAT/QUIT behind a Telnet sequence sometimes leave
                // stray bytes in front of the verb (pyftpdlib checks the last 4 characters).
                let tail = verb.get(verb.len().saturating_sub(4)..).unwrap_or("");
                match self.h.commands.get(tail) {
                    Some(c) if matches!(tail, "ABOR" | "STAT" | "QUIT") => c,
                    _ => return self.unknown_command(&verb),
                }
            }
        };
        let (name, auth, rule, perm, run) = (
            cmd.name.clone(),
            cmd.auth,
            cmd.arg,
            cmd.perm,
            cmd.run.clone(),
        );

        if arg.is_empty() && rule == Arg::Required {
            return self.reply(501, "Syntax error: command needs an argument.");
        }
        if !arg.is_empty() && rule == Arg::Forbidden {
            return self.reply(501, "Syntax error: command does not accept arguments.");
        }
        if !self.authenticated && (auth || (name == "STAT" && !arg.is_empty())) {
            return self.reply(530, "Log in with USER and PASS first.");
        }

        let mut req = Request {
            verb: name.clone(),
            arg,
            vpath: None,
            path: None,
            extra: None,
        };
        if self.authenticated {
            if let Some(perm) = perm {
                if name != "STOU" && !(name == "STAT" && req.arg.is_empty()) {
                    if !self.resolve(&mut req)? {
                        return Ok(());
                    }
                    let path = req.path.as_deref();
                    if !self.h.authorizer.has_perm(&self.username, perm, path) {
                        log::info!("{} {name}: not enough privileges", self.prefix);
                        return self.reply(550, "Not enough privileges.");
                    }
                }
            }
        }
        if CREATES_NAME.contains(&name.as_str()) && proto::bad_new_name(&req.arg) {
            return self.refuse_new_name(&name, &req.arg);
        }
        let r = run(self, &req);
        if matches!(name.as_str(), "PORT" | "EPRT" | "PASV" | "EPSV") {
            self.data_refused = matches!(self.data, super::data::DataSetup::None);
        }
        r
    }

    /// `500 Command "FOO" not understood.`: pyftpdlib echoes the verb whatever it is; here
    /// only a short plain word is (see [`proto::echoable`]).
    fn unknown_command(&mut self, verb: &str) -> io::Result<()> {
        log::info!("{} unknown command {verb:?}", self.prefix);
        match proto::echoable(verb) {
            Some(v) => self.reply(500, &format!("Command \"{v}\" not understood.")),
            None => self.reply(500, "Command not understood."),
        }
    }

    /// `553` for a name to be created that holds CR, LF or NUL (RFC 959 §4.2: it would break
    /// the reply lines that show it).
    fn refuse_new_name(&mut self, verb: &str, arg: &[u8]) -> io::Result<()> {
        log::warn!(
            "{} {verb} refused: a control character in the new name '{}'",
            self.prefix,
            proto::log_escape(arg)
        );
        self.reply(553, "File name not allowed: it contains CR, LF or NUL.")
    }

    /// Ends a connection whose client speaks HTTP before logging in (a browser made to send
    /// a request to the FTP port): one refusal, as vsftpd sends, then the connection closes
    /// and nothing the client sent after the line runs.
    fn refuse_http(&mut self, line: &[u8]) -> io::Result<()> {
        let shown = &line[..line.len().min(120)];
        log::warn!(
            "{} HTTP request on the control connection, closing: '{}'",
            self.prefix,
            proto::log_escape(shown)
        );
        self.discard_input();
        self.closing = true;
        self.reply(500, "HTTP protocol commands not allowed.")
    }

    /// Normalizes a command's path argument into the virtual path its operation will
    /// resolve beneath the root, and the host path the permission check sees. Returns false
    /// when a reply has already refused the command.
    fn resolve(&mut self, req: &mut Request) -> io::Result<bool> {
        let Some(fs) = self.fs.as_ref() else {
            return Ok(false);
        };
        let target: Vec<u8> = match req.verb.as_str() {
            "CWD" | "XCWD" => {
                if req.arg.is_empty() {
                    b"/".to_vec()
                } else {
                    req.arg.clone()
                }
            }
            "CDUP" | "XCUP" => b"..".to_vec(),
            "LIST" | "NLST" | "STAT" => strip_ls_options(&req.arg).to_vec(),
            "SITE CHMOD" | "MFMT" => {
                let Some(sp) = req.arg.iter().position(|&b| b == b' ') else {
                    self.reply(501, "Syntax error: command needs two arguments.")?;
                    return Ok(false);
                };
                req.extra = Some(String::from_utf8_lossy(&req.arg[..sp]).into_owned());
                req.arg[sp + 1..].to_vec()
            }
            _ => req.arg.clone(),
        };
        if req.verb == "STAT" && target.iter().any(|b| b"*?[".contains(b)) {
            self.reply(550, "Globbing not supported.")?;
            return Ok(false);
        }
        if target.contains(&0) {
            log::warn!("{} {}: NUL byte in path", self.prefix, req.verb);
            self.reply(501, "Invalid path: NUL byte.")?;
            return Ok(false);
        }
        req.vpath = Some(fs.vpath(&target));
        req.path = Some(fs.ftp2fs(&target));
        Ok(true)
    }
}

/// Drops the `ls` options many clients put first (`LIST -la`, `LIST -a dir`, `NLST -l`).
pub(crate) fn strip_ls_options(arg: &[u8]) -> &[u8] {
    let mut rest = arg;
    while rest.first() == Some(&b'-') {
        match rest.iter().position(|&b| b == b' ') {
            Some(p) => rest = &rest[p + 1..],
            None => return &[],
        }
        while rest.first() == Some(&b' ') {
            rest = &rest[1..];
        }
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::strip_ls_options;

    #[test]
    fn ls_options_are_ignored() {
        assert_eq!(strip_ls_options(b"-la"), b"");
        assert_eq!(strip_ls_options(b"-a dir"), b"dir");
        assert_eq!(strip_ls_options(b"-l -a  dir x"), b"dir x");
        assert_eq!(strip_ls_options(b"dir"), b"dir");
    }
}
