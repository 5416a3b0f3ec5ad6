//! Command dispatch: the only place for the checks every command shares, read from the
//! command table's columns, in pyftpdlib's order and texts (`pre_process_command`): unknown
//! → 500, TLS required → 550, argument rule → 501, not logged in → 530, permission →
//! 550, a new name holding CR, LF or NUL → 553; then the command runs. Before the checks:
//! an HTTP request before login closes the connection. A path leading out of the root is
//! refused (550, pyftpdlib's text) by the operation itself, which resolves it beneath the
//! root when it runs: nothing here checks a path that a command would then open again by
//! name.

use std::io;

use super::data::Phase;
use super::Session;
use crate::handlers::table::{
    Arg, Audit, Channel, Command, Creates, Found, Login, PathArg, Request, Tls,
};
use crate::proto;

/// The texts pyftpdlib sends when TLS is required.
pub(crate) const CONTROL_REQUIRED: &str = "SSL/TLS required on the control channel.";
pub(crate) const DATA_REQUIRED: &str = "SSL/TLS required on the data channel.";

impl Session {
    /// The verb (upper case; `SITE NAME` for SITE commands) and the argument decoded from
    /// the wire encoding, of a cleaned line.
    pub(crate) fn split_verb(&self, clean: &[u8]) -> (String, Vec<u8>) {
        let (mut verb, arg) = proto::split_command(clean);
        let mut arg = self.h.encoding.decode(&arg);
        if verb == "SITE" && !arg.is_empty() {
            let (sub, rest) = proto::split_command(&arg);
            verb = format!("SITE {sub}");
            arg = rest;
        }
        (verb, arg)
    }

    /// Runs one raw command line.
    pub(crate) fn dispatch(&mut self, raw: &[u8]) -> io::Result<()> {
        self.stats.commands += 1;
        self.ctx.stats.command();
        let line = proto::clean_line(raw);
        let (verb, _) = proto::split_command(&line);
        if log::log_enabled!(log::Level::Debug) {
            self.log_received(&verb, &line);
        }
        if !self.account.authenticated
            && proto::is_http_line(&verb)
            && self.h.command(&verb).is_none()
        {
            return self.refuse_http(&line);
        }
        let (verb, arg) = self.split_verb(&line);
        let h = self.h.clone();
        self.ctrl.last_reply = None;
        let cmd = match h.lookup(&verb) {
            Found::Row(c) => c,
            Found::NotImplemented => {
                self.ctrl.reply(502, "Command not implemented.")?;
                return self.log_command(&verb, Audit::Failures, &arg, None);
            }
            Found::Unknown => {
                self.unknown_command(&verb)?;
                return self.log_command(&verb, Audit::Failures, &arg, None);
            }
        };
        let Some(req) = self.check(cmd, arg.clone())? else {
            return self.log_command(&cmd.name, cmd.audit, &arg, None);
        };
        let r = (cmd.run)(self, &req);
        if cmd.channel == Channel::Setup {
            self.data.refused = matches!(self.data.setup, super::data::Setup::None);
        }
        r?;
        if self.account.announce {
            self.announce_login();
        }
        self.log_command(&cmd.name, cmd.audit, &req.arg, Some(&req))?;
        self.after_command()
    }

    /// The log line of a login, written once PASS has returned: from this frame, not from
    /// under the authorizer's call, the logger's frames stay above the deepest stack page an
    /// idle logged-in session keeps (see `Session::serve`). From here on the session's
    /// thread runs batch ([`FtpHandler::batch_scheduling`](crate::handlers::FtpHandler));
    /// the server puts it back when the session ends.
    #[cold]
    #[inline(never)]
    fn announce_login(&mut self) {
        self.account.announce = false;
        if self.h.batch_scheduling {
            crate::process::batch_scheduling(true);
        }
        let shown = proto::log_escape(self.account.username.as_bytes());
        log::info!("{} USER '{shown}' logged in.", self.ctrl.prefix);
    }

    /// The line received, in the debug log (a password is not shown). Not inlined: the
    /// frame under every command stays small (see `Session::serve` on stack depth).
    #[cold]
    #[inline(never)]
    fn log_received(&self, verb: &str, line: &[u8]) {
        if verb == "PASS" {
            log::debug!("{} <- PASS ******", self.ctrl.prefix);
        } else {
            log::debug!("{} <- {}", self.ctrl.prefix, proto::log_escape(line));
        }
    }

    /// The command's line in the default-level log (pyftpdlib `log_cmd`): `VERB [first
    /// word] /virtual/path CODE`, plus the reply text after a 4xx/5xx code, for rows whose
    /// [`Audit`] asks for it. The argument shown is the resolved virtual path when the row
    /// has one, else the argument as sent.
    fn log_command(
        &mut self,
        verb: &str,
        audit: Audit,
        arg: &[u8],
        req: Option<&Request>,
    ) -> io::Result<()> {
        let Some((code, text)) = self.ctrl.last_reply.as_ref() else {
            return Ok(());
        };
        let failed = *code >= 400;
        if audit == Audit::Own || (audit == Audit::Failures && !failed) {
            return Ok(());
        }
        let mut line = verb.to_string();
        if let Some(extra) = req.and_then(|r| r.extra.as_deref()) {
            line.push(' ');
            line.push_str(&proto::log_escape(extra.as_bytes()));
        }
        match req.and_then(|r| r.vpath.as_deref()) {
            Some(v) => {
                line.push(' ');
                line.push_str(&proto::log_escape(v.as_os_str().as_encoded_bytes()));
            }
            None if !arg.is_empty() => {
                line.push(' ');
                line.push_str(&proto::log_escape(&arg[..arg.len().min(200)]));
            }
            None => {}
        }
        line.push_str(&format!(" {code}"));
        if failed {
            line.push_str(&format!(" '{}'", proto::log_escape(text)));
        }
        log::info!("{} {line}", self.ctrl.prefix);
        Ok(())
    }

    /// The checks of `cmd`'s columns; the request to run, or `None` when a reply already
    /// refused it. Not inlined: its locals stay off the stack while the command runs (see
    /// `Session::serve` on stack depth).
    #[inline(never)]
    fn check(&mut self, cmd: &Command, arg: Vec<u8>) -> io::Result<Option<Request>> {
        if matches!(cmd.channel, Channel::File | Channel::Listing)
            && matches!(self.data.phase, Phase::Awaiting(_))
        {
            // A second transfer replaces the one waiting for its channel.
            self.cancel_phase();
            self.ctrl.reply(425, "Use PORT or PASV first.")?;
        }
        if !self.tls_allows(cmd)? {
            return Ok(None);
        }
        if arg.is_empty() && cmd.arg == Arg::Required {
            self.ctrl
                .reply(501, "Syntax error: command needs an argument.")?;
            return Ok(None);
        }
        if !arg.is_empty() && cmd.arg == Arg::Forbidden {
            self.ctrl
                .reply(501, "Syntax error: command does not accept arguments.")?;
            return Ok(None);
        }
        let login = match cmd.login {
            Login::Needed => true,
            Login::Free => false,
            Login::WithArg => !arg.is_empty(),
        };
        if login && !self.account.authenticated {
            self.ctrl.reply(530, "Log in with USER and PASS first.")?;
            return Ok(None);
        }
        let mut req = Request {
            verb: cmd.name.clone(),
            arg,
            vpath: None,
            path: None,
            extra: None,
        };
        if !self.permitted(cmd, &mut req)? {
            return Ok(None);
        }
        if cmd.creates == Creates::Name && proto::bad_new_name(&req.arg) {
            self.refuse_new_name(&cmd.name, &req.arg)?;
            return Ok(None);
        }
        Ok(Some(req))
    }

    /// The TLS the row needs when the handler requires it (pyftpdlib
    /// `TLS_FTPHandler.pre_process_command`). False when a reply refused the command.
    fn tls_allows(&mut self, cmd: &Command) -> io::Result<bool> {
        let Some(cfg) = self.h.tls.as_ref() else {
            return Ok(true);
        };
        let refusal = match cmd.tls {
            Tls::Control if cfg.tls_control_required && !self.ctrl.is_tls() => {
                (550, CONTROL_REQUIRED)
            }
            Tls::Data if cfg.tls_data_required && !self.data.protection.private => {
                (550, DATA_REQUIRED)
            }
            _ => return Ok(true),
        };
        self.ctrl.reply(refusal.0, refusal.1)?;
        Ok(false)
    }

    /// Resolves the path argument of a row with a permission letter and checks the
    /// permission on it. False when a reply refused the command.
    fn permitted(&mut self, cmd: &Command, req: &mut Request) -> io::Result<bool> {
        let Some(perm) = cmd.perm else {
            return Ok(true);
        };
        let resolved = match (cmd.path, req.arg.is_empty()) {
            (PathArg::NotAPath | PathArg::Unique, _) | (PathArg::Status, true) => return Ok(true),
            _ if !self.account.authenticated => return Ok(true),
            _ => self.resolve(cmd.path, req)?,
        };
        if !resolved {
            return Ok(false);
        }
        let path = req.path.as_deref();
        if !self
            .h
            .authorizer
            .has_perm(&self.account.username, perm, path)
        {
            self.ctrl.reply(550, "Not enough privileges.")?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Normalizes a command's path argument, by its shape, into the virtual path its
    /// operation will resolve beneath the root, and the host path the permission check
    /// sees. Returns false when a reply has already refused the command.
    fn resolve(&mut self, shape: PathArg, req: &mut Request) -> io::Result<bool> {
        let Some(fs) = self.account.fs.as_ref() else {
            return Ok(false);
        };
        let target: Vec<u8> = match shape {
            PathArg::Cwd if req.arg.is_empty() => b"/".to_vec(),
            PathArg::Parent => b"..".to_vec(),
            PathArg::LsArgs | PathArg::Status => strip_ls_options(&req.arg).to_vec(),
            PathArg::AfterWord => {
                let Some(sp) = req.arg.iter().position(|&b| b == b' ') else {
                    self.ctrl
                        .reply(501, "Syntax error: command needs two arguments.")?;
                    return Ok(false);
                };
                req.extra = Some(String::from_utf8_lossy(&req.arg[..sp]).into_owned());
                req.arg[sp + 1..].to_vec()
            }
            _ => req.arg.clone(),
        };
        if shape == PathArg::Status && target.iter().any(|b| b"*?[".contains(b)) {
            self.ctrl.reply(550, "Globbing not supported.")?;
            return Ok(false);
        }
        if target.contains(&0) {
            log::warn!("{} {}: NUL byte in path", self.ctrl.prefix, req.verb);
            self.ctrl.reply(501, "Invalid path: NUL byte.")?;
            return Ok(false);
        }
        req.vpath = Some(fs.vpath(&target));
        req.path = Some(fs.ftp2fs(&target));
        Ok(true)
    }

    /// `500 Command "FOO" not understood.`: pyftpdlib echoes the verb whatever it is; here
    /// only a short plain word is (see [`proto::echoable`]).
    #[inline(never)]
    fn unknown_command(&mut self, verb: &str) -> io::Result<()> {
        match proto::echoable(verb) {
            Some(v) => self
                .ctrl
                .reply(500, &format!("Command \"{v}\" not understood.")),
            None => self.ctrl.reply(500, "Command not understood."),
        }
    }

    /// `553` for a name to be created that holds CR, LF or NUL (RFC 959 §4.2: it would break
    /// the reply lines that show it).
    fn refuse_new_name(&mut self, verb: &str, arg: &[u8]) -> io::Result<()> {
        log::warn!(
            "{} {verb} refused: a control character in the new name '{}'",
            self.ctrl.prefix,
            proto::log_escape(arg)
        );
        self.ctrl
            .reply(553, "File name not allowed: it contains CR, LF or NUL.")
    }

    /// Ends a connection whose client speaks HTTP before logging in (a browser made to send
    /// a request to the FTP port): one refusal, as vsftpd sends, then the connection closes
    /// and nothing the client sent after the line runs.
    #[inline(never)]
    fn refuse_http(&mut self, line: &[u8]) -> io::Result<()> {
        let shown = &line[..line.len().min(120)];
        log::warn!(
            "{} HTTP request on the control connection, closing: '{}'",
            self.ctrl.prefix,
            proto::log_escape(shown)
        );
        self.ctrl.discard_input();
        self.ctrl.closing = true;
        self.stats.ending(crate::handlers::stats::SessionEnd::Limit);
        self.ctrl.reply(500, "HTTP protocol commands not allowed.")
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
