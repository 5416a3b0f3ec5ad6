//! Information and options: FEAT (RFC 2389), OPTS (RFC 2389 §4, RFC 3659 §7.9, RFC 2640),
//! HELP and SITE HELP (read from the command table), SYST, NOOP.

use std::io;

use crate::filesystems::listing::{mlst_feat, AVAILABLE_FACTS};
use crate::handlers::{Request, Session};

pub(super) fn feat(s: &mut Session, _req: &Request) -> io::Result<()> {
    let mut feats: Vec<String> = vec!["TVFS".into()];
    // pyftpdlib announces UTF8 only when the wire encoding is UTF-8.
    if s.h.encoding == crate::handlers::Encoding::Utf8 {
        feats.push("UTF8".into());
    }
    if s.h.tls.is_some() {
        feats.push("AUTH SSL".into());
    }
    for c in s.h.command_rows() {
        if c.name == "MLST" {
            feats.push(mlst_feat(&s.facts));
        } else if let Some(f) = &c.feat {
            if !feats.contains(f) {
                feats.push(f.clone());
            }
        }
    }
    feats.sort();
    let body: Vec<Vec<u8>> = feats.into_iter().map(String::into_bytes).collect();
    s.reply_multi(211, "Features supported:", &body, "End FEAT.")
}

pub(super) fn opts(s: &mut Session, req: &Request) -> io::Result<()> {
    let line = req.arg_str();
    if line.matches(' ').count() > 1 {
        return s.reply(501, "Invalid number of arguments.");
    }
    let (cmd, arg) = match line.split_once(' ') {
        Some((c, a)) => (c.to_ascii_uppercase(), a.trim().to_string()),
        None => (line.to_ascii_uppercase(), String::new()),
    };
    if cmd == "UTF8" || cmd == "UTF-8" {
        // RFC 2640: names are always exchanged as UTF-8 bytes here; pyftpdlib gives this
        // answer whatever the argument (ON, OFF or none).
        return s.reply(200, "Always in UTF8 mode.");
    }
    if cmd != "MLST" || s.h.command("MLST").is_none() {
        return match crate::proto::echoable(&cmd) {
            Some(c) => s.reply(501, &format!("Unsupported command \"{c}\".")),
            None => s.reply(501, "Unsupported command."),
        };
    }
    match crate::proto::parse_mlst_facts(&arg, &AVAILABLE_FACTS) {
        Some(facts) => s.facts = facts,
        None => return s.reply(501, "Invalid argument."),
    }
    let list: String = s.facts.iter().map(|f| format!("{f};")).collect();
    s.reply(200, &format!("MLST OPTS {list}"))
}

pub(super) fn help(s: &mut Session, req: &Request) -> io::Result<()> {
    let arg = req.arg_str().trim().to_ascii_uppercase();
    if !arg.is_empty() {
        let text = s.h.command(&arg).map(|c| c.help.clone());
        return match text {
            Some(t) => s.reply(214, &t),
            None => s.reply(501, "Unrecognized command."),
        };
    }
    let names: Vec<String> =
        s.h.command_rows()
            .into_iter()
            .filter(|c| !c.name.starts_with("SITE "))
            .map(|c| c.name.clone())
            .collect();
    let body: Vec<Vec<u8>> = names
        .chunks(8)
        .map(|row| {
            // pyftpdlib: " %-6s" per name (the first space comes from reply_multi).
            row.iter()
                .map(|n| format!("{n:<6}"))
                .collect::<Vec<_>>()
                .join(" ")
                .into_bytes()
        })
        .collect();
    s.reply_multi(
        214,
        "The following commands are recognized:",
        &body,
        "Help command successful.",
    )
}

pub(super) fn site_help(s: &mut Session, req: &Request) -> io::Result<()> {
    let arg = req.arg_str().trim().to_ascii_uppercase();
    if !arg.is_empty() {
        let key = if arg.starts_with("SITE ") {
            arg.clone()
        } else {
            format!("SITE {arg}")
        };
        let text = s.h.command(&key).map(|c| c.help.clone());
        return match text {
            Some(t) => s.reply(214, &t),
            None => s.reply(501, "Unrecognized SITE command."),
        };
    }
    let body: Vec<Vec<u8>> =
        s.h.command_rows()
            .into_iter()
            .filter_map(|c| c.name.strip_prefix("SITE ").map(|n| n.as_bytes().to_vec()))
            .collect();
    s.reply_multi(
        214,
        "The following SITE commands are recognized:",
        &body,
        "Help SITE command successful.",
    )
}

pub(super) fn site(s: &mut Session, _req: &Request) -> io::Result<()> {
    // "SITE <name>" is dispatched to its own row; a bare SITE is refused by the argument rule.
    s.reply(501, "Syntax error: command needs an argument.")
}

pub(super) fn syst(s: &mut Session, _req: &Request) -> io::Result<()> {
    s.reply(215, "UNIX Type: L8")
}

pub(super) fn noop(s: &mut Session, _req: &Request) -> io::Result<()> {
    s.reply(200, "I successfully did nothing'.")
}
