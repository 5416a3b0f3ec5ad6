//! FTPS commands: AUTH, PBSZ, PROT, CCC (pyftpdlib `TLS_FTPHandler.ftp_AUTH` …; RFC 2228 §3,
//! RFC 4217 §4, §6, §8, §9). They exist only when the handler has TLS (dispatch refuses them
//! otherwise).

use std::io;

use crate::handlers::{Request, Session};

pub(super) fn auth(s: &mut Session, req: &Request) -> io::Result<()> {
    if s.ctrl.is_tls() {
        return s.reply(503, "Already using TLS.");
    }
    let arg = req.arg_str().trim().to_ascii_uppercase();
    match arg.as_str() {
        // RFC 4217 §4: TLS and SSL self-negotiate; TLS-C and TLS-P are old synonyms.
        "TLS" | "TLS-C" | "SSL" | "TLS-P" => {
            s.reply(234, &format!("AUTH {arg} successful."))?;
            s.secure_control().map(drop)
        }
        // RFC 4217 §4 / RFC 2228: an unknown mechanism gets 504.
        _ => s.reply(504, "Unrecognized encryption type (use TLS or SSL)."),
    }
}

pub(super) fn pbsz(s: &mut Session, req: &Request) -> io::Result<()> {
    if !s.ctrl.is_tls() {
        return s.reply(503, "PBSZ not allowed on insecure control connection.");
    }
    if req.arg_str().trim().parse::<u64>().is_err() {
        return s.reply(501, "Invalid PBSZ value.");
    }
    // RFC 4217 §8: for TLS the only size is 0; any other value is answered with PBSZ=0.
    s.data.protection.pbsz = true;
    s.reply(200, "PBSZ=0 successful.")
}

pub(super) fn prot(s: &mut Session, req: &Request) -> io::Result<()> {
    if !s.ctrl.is_tls() {
        return s.reply(503, "PROT not allowed on insecure control connection.");
    }
    if !s.data.protection.pbsz {
        // RFC 4217 §9: PROT before PBSZ is a bad sequence.
        return s.reply(503, "You must issue the PBSZ command prior to PROT.");
    }
    match req.arg_str().trim().to_ascii_uppercase().as_str() {
        "C" => {
            if s.h.tls.as_ref().is_some_and(|t| t.tls_data_required) {
                return s.reply(534, "SSL/TLS required on the data channel.");
            }
            s.data.protection.private = false;
            s.reply(200, "Protection set to Clear")
        }
        "P" => {
            s.data.protection.private = true;
            s.reply(200, "Protection set to Private")
        }
        // RFC 4217 §9: S and E are not supported by the TLS mechanism.
        a @ ("S" | "E") => s.reply(536, &format!("PROT {a} unsupported (use C or P).")),
        _ => s.reply(504, "Unrecognized PROT type (use C or P)."),
    }
}

pub(super) fn ccc(s: &mut Session, _req: &Request) -> io::Result<()> {
    if !s.ctrl.is_tls() {
        return s.reply(533, "CCC not allowed on insecure control connection.");
    }
    if s.h.tls.as_ref().is_some_and(|t| t.tls_control_required) {
        return s.reply(534, "CCC refused: SSL/TLS required on the control channel.");
    }
    s.reply(200, "Clear command channel set.")?;
    s.clear_control()
}
