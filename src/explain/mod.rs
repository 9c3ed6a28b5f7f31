//! `postern explain`: where would mail for an address go, and why —
//! answered without sending anything, by the code the server runs.
//!
//! - acceptance: the SMTP dialog is played against the pure session with
//!   the chosen listener's configuration (session.rs); RCPT is answered
//!   as the server answers it: [`policy::decide`] (which rule decided),
//!   the reinjection listener's rule, the quota check at RCPT;
//! - aliases: [`Directory::resolve_traced`], every step with its row or
//!   file line;
//! - destinations: [`Router::from_config`]'s route for each final
//!   recipient (route.rs here says what each route means: Maildir and
//!   quota, the pipe's argv after macro expansion, SMTP hops with TLS
//!   policy, credentials entry and the MX answer of the configured
//!   resolver);
//! - the content filter and the header and body rules mail received on
//!   that listener meets.
//!
//! It reads the configuration, the user directory and Maildir quota
//! files; it writes nothing but what a quota check may refresh
//! (maildirsize, as the server would at RCPT). A DNS failure is part of
//! the answer, never an error of the command.

mod json;
mod route;
mod session;
mod text;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::config::{Config, Listener, ListenerRole};
use crate::deliver::maildir::MaildirAgent;
use crate::directory::{Directory, Resolution, Trace, TraceStep};
use crate::policy::{self, Client};
use crate::route::Router;
use crate::smtp::address::Address;
use crate::smtp::reply::{self, Reply};

pub use json::J;
pub use session::Exchange;

/// What to explain.
pub struct Request {
    pub recipient: String,
    /// The envelope sender; "" for the null sender.
    pub from: String,
    pub client: IpAddr,
    /// Logged in as this user.
    pub auth: Option<String>,
    /// `--listener`: index from 1, or an address (configured or bound).
    pub listener: Option<String>,
    /// Look up MX and host addresses.
    pub dns: bool,
}

/// The listener the mail would arrive on.
pub struct ListenerInfo {
    /// From 1, in config order (as in data_dir/listening).
    pub index: usize,
    pub address: String,
    /// Where the running server is bound, if it is.
    pub bound: Option<String>,
    pub mode: &'static str,
    pub role: &'static str,
    pub require_auth: bool,
    /// How it was chosen, for people.
    pub chosen: String,
}

/// The content filter mail received on the listener goes through.
pub struct FilterInfo {
    pub next_hop: String,
    /// The reinjection listener it is expected back on.
    pub back_on: Option<String>,
}

/// A table of header or body rules that applies.
pub struct RuleTable {
    /// "header", "mime_header" or "body".
    pub place: &'static str,
    pub file: String,
    /// (line, text) of each rule.
    pub rules: Vec<(usize, String)>,
}

/// One final destination and its route.
pub struct Destination {
    pub address: String,
    /// "maildir", "pipe", "file", "smtp", "hold", "discard", "bounce", "defer".
    pub route: &'static str,
    pub fields: Vec<(&'static str, J)>,
}

pub struct Report {
    pub recipient: String,
    pub from: String,
    pub client: IpAddr,
    pub trusted: bool,
    pub listener: ListenerInfo,
    pub auth: Option<String>,
    pub logged_in: Option<String>,
    pub dialog: Vec<Exchange>,
    pub accepted: bool,
    /// (name, description) of the rule that decided RCPT.
    pub rule: Option<(&'static str, String)>,
    pub expansion: Vec<TraceStep>,
    pub filter: Option<FilterInfo>,
    pub destinations: Vec<Destination>,
    pub rules: Vec<RuleTable>,
    /// Only rewrites (IGNORE, STRIP, REPLACE) of the rules apply here.
    pub rewrites_only: bool,
    pub notes: Vec<String>,
}

impl Report {
    pub fn text(&self) -> String {
        text::render(self)
    }

    pub fn json(&self) -> String {
        text::json(self).render() + "\n"
    }
}

/// Why there is no report: the exit code (sysexits) and the message.
pub struct Failure(pub i32, pub String);

/// What a real login of `user` would meet in the directory, when it
/// would be refused.
fn login_note(directory: &Directory, user: &str) -> Option<String> {
    match directory.login(user) {
        Ok(Some(row)) if row.smtp_active => None,
        Ok(Some(_)) => Some(format!(
            "{user} has smtp_active = 0: a real login would be refused"
        )),
        Ok(None) => Some(format!(
            "{user} is not an active mailbox: a real login would be refused"
        )),
        Err(e) => Some(format!("cannot look up the login {user}: {e}")),
    }
}

/// The content filter mail from listener `l` passes, and the listener it
/// comes back on.
fn filter_info(cfg: &Config, l: &crate::config::Listener) -> Option<FilterInfo> {
    l.content_filter(&cfg.content).map(|hop| FilterInfo {
        next_hop: hop,
        back_on: cfg
            .listeners
            .iter()
            .position(|x| x.role == ListenerRole::Reinject)
            .map(|i| {
                format!(
                    "listener {} ({})",
                    i + 1,
                    show_addr(cfg.listeners[i].address)
                )
            }),
    })
}

/// What the server would resolve and route with.
struct Parts<'a> {
    cfg: &'a Config,
    directory: &'a Directory,
    router: &'a Router,
    maildir: &'a MaildirAgent,
}

/// Aliases and routes, as the queue runner expands and routes the
/// recipient (after the content filter, when there is one): the
/// expansion's steps when the directory had a say (`looked_up`; refused
/// before it, by relay, reinjection or the session, its expansion would
/// only mislead), and each final destination when `accepted`.
fn expand_and_route(
    p: &Parts<'_>,
    req: &Request,
    addr: &Address,
    accepted: bool,
    looked_up: bool,
    notes: &mut Vec<String>,
) -> (Vec<TraceStep>, Vec<Destination>) {
    let mut destinations = Vec::new();
    let mut trace = Trace::on();
    match p.directory.resolve_traced(addr, &mut trace) {
        Ok(Resolution::Deliver(dests)) if accepted => {
            let ctx = route::Ctx::new(p.cfg, p.router, p.maildir, req, addr);
            destinations.extend(dests.iter().map(|d| ctx.destination(d)));
        }
        Ok(_) => {}
        Err(e) => notes.push(format!("the user directory could not answer: {e}")),
    }
    let expansion = if looked_up { trace.steps() } else { Vec::new() };
    (expansion, destinations)
}

/// The server's answer to RCPT `addr` from this client (`trusted`, on a
/// reinjection listener or not, logged in or not), with the rule that
/// gave it: the relay policy, then the quota check at RCPT, as the
/// session does.
fn rcpt_verdict(
    p: &Parts<'_>,
    trusted: bool,
    reinject: bool,
    addr: &Address,
    logged_in: bool,
) -> ((&'static str, String), Result<(), Reply>) {
    if reinject {
        let why = match trusted {
            true => "a reinjection listener (the content filter's way back): trusted clients only, recipients were checked on the first pass",
            false => "a reinjection listener takes mail only from its trusted networks",
        };
        return (
            ("reinject", why.to_string()),
            policy::reinject_recipient(trusted, addr),
        );
    }
    let who = Client {
        trusted_network: trusted,
        authenticated: logged_in,
    };
    let (r, verdict) = match policy::decide(p.directory, &who, addr) {
        Err(e) => {
            let why = format!("the user directory could not answer: {e}");
            return (("lookup_failed", why), Err(reply::LOOKUP_TEMPFAIL));
        }
        Ok(decided) => decided,
    };
    let rule = (r.name(), r.describe().to_string());
    if verdict.is_err() {
        return (rule, verdict);
    }
    let dests = match p.directory.resolve(addr) {
        Ok(Resolution::Deliver(d)) => d,
        _ => return (rule, Ok(())),
    };
    let Some(m) = crate::intake::quota_mailbox(p.router, &dests) else {
        return (rule, Ok(()));
    };
    match crate::intake::quota_verdict(p.maildir, &m, addr, 0) {
        Ok(()) => (rule, Ok(())),
        Err(reply) => {
            let why = format!(
                "the mailbox {} is over its quota ([quota] over_quota)",
                m.path.display()
            );
            (("quota_full", why), Err(reply))
        }
    }
}

/// Explains `req` under `cfg` (absolutized).
pub fn explain(cfg: &Config, req: &Request) -> Result<Report, Failure> {
    let (index, l, chosen) = pick_listener(cfg, req.listener.as_deref())
        .map_err(|e| Failure(crate::sysexits::EX_USAGE, e))?;
    let ip = crate::server::conn::canonical(req.client);
    let trusted = Client::new(ip, l.trusted(&cfg.main.trusted_networks)).trusted_network;
    let (directory, damaged) = Directory::open(cfg);
    let owner = match (cfg.delivery.uid, cfg.delivery.gid) {
        (Some(u), Some(g)) => Some((u, g)),
        _ => None,
    };
    let router =
        Router::from_config(cfg, owner).map_err(|e| Failure(crate::sysexits::EX_CONFIG, e))?;
    let maildir = MaildirAgent::for_config(cfg);
    let reinject = l.role == ListenerRole::Reinject;
    let mut notes: Vec<String> = damaged
        .map(|w| format!("the user directory is unusable (the server answers 451): {w}"))
        .into_iter()
        .collect();

    let parts = Parts {
        cfg,
        directory: &directory,
        router: &router,
        maildir: &maildir,
    };
    let mut rule = None;
    let mut check = |addr: &Address, logged_in: bool| -> Result<(), Reply> {
        let (r, verdict) = rcpt_verdict(&parts, trusted, reinject, addr, logged_in);
        rule = Some(r);
        verdict
    };
    let dialog = session::play(
        Arc::new(cfg.session_config(l)),
        ip,
        l.mode == crate::config::ListenerMode::ImplicitTls,
        req.auth.as_deref(),
        &req.from,
        &req.recipient,
        &mut check,
    );
    if let (Some(user), None) = (&req.auth, &dialog.logged_in) {
        notes.push(format!("{user} cannot log in on this listener: AUTH is not offered here ([auth] backend, tls_only)"));
    }
    if let (Some(user), Some(_), crate::config::AuthBackend::Sqlite) =
        (&req.auth, &dialog.logged_in, cfg.auth.backend)
    {
        notes.extend(login_note(&directory, user));
    }
    let accepted = dialog.rcpt.as_ref().is_some_and(Reply::is_positive);
    let rule = rule.or_else(|| {
        let last = dialog.exchanges.last()?;
        (!accepted).then(|| {
            (
                "session",
                format!(
                    "the SMTP session refused {} before any lookup",
                    last.command
                ),
            )
        })
    });
    let filter = filter_info(cfg, l);

    let (expansion, destinations) = match &dialog.recipient {
        Some(addr) => {
            let looked_up = accepted
                || matches!(
                    rule.as_ref().map(|r| r.0),
                    Some("unknown_user" | "alias_loop" | "quota_full")
                );
            expand_and_route(&parts, req, addr, accepted, looked_up, &mut notes)
        }
        None => (Vec::new(), Vec::new()),
    };
    let rules = rule_tables(cfg);
    let mut seen = std::collections::HashSet::new();
    notes.retain(|n| seen.insert(n.clone()));
    Ok(Report {
        recipient: dialog
            .recipient
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_else(|| req.recipient.clone()),
        from: req.from.clone(),
        client: ip,
        trusted,
        listener: ListenerInfo {
            index,
            address: show_addr(l.address),
            bound: bound_address(cfg, index),
            mode: l.mode.as_str(),
            role: l.role.as_str(),
            require_auth: l.require_auth,
            chosen,
        },
        auth: req.auth.clone(),
        logged_in: dialog.logged_in.clone(),
        dialog: dialog.exchanges,
        accepted,
        rule,
        expansion,
        filter,
        destinations,
        rules,
        rewrites_only: reinject,
        notes,
    })
}

fn show_addr(a: Option<SocketAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_default()
}

/// Where the running server bound listener `index` (data_dir/listening).
fn bound_address(cfg: &Config, index: usize) -> Option<String> {
    let text = std::fs::read_to_string(cfg.data_dir().join("listening")).ok()?;
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&index.to_string().as_str()))
        .and_then(|w| w.get(2).map(|s| s.to_string()))
}

/// `--listener`: an index from 1, a configured address, or an address
/// the running server is bound to; none: the first listener.
fn pick_listener<'a>(
    cfg: &'a Config,
    want: Option<&str>,
) -> Result<(usize, &'a Listener, String), String> {
    let n = cfg.listeners.len();
    let allowed = || {
        let addrs: Vec<String> = cfg
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{} = {}", i + 1, show_addr(l.address)))
            .collect();
        format!(
            "allowed: an index 1..{n} or an address ({})",
            addrs.join(", ")
        )
    };
    if n == 0 {
        return Err("the configuration has no [[listener]]".into());
    }
    let Some(want) = want.map(str::trim) else {
        return Ok((
            1,
            &cfg.listeners[0],
            "the first listener (no --listener given)".into(),
        ));
    };
    if let Ok(i) = want.parse::<usize>() {
        return match i {
            1.. if i <= n => Ok((
                i,
                &cfg.listeners[i - 1],
                format!("--listener {i}: by index"),
            )),
            _ => Err(format!(
                "--listener {want}: no listener number {i}; {}",
                allowed()
            )),
        };
    }
    let Ok(addr) = want.parse::<SocketAddr>() else {
        return Err(format!(
            "--listener {want:?}: not an index or an address such as 127.0.0.1:25; {}",
            allowed()
        ));
    };
    if let Some(i) = cfg.listeners.iter().position(|l| l.address == Some(addr)) {
        return Ok((
            i + 1,
            &cfg.listeners[i],
            format!("--listener {want}: its configured address"),
        ));
    }
    for i in 1..=n {
        if bound_address(cfg, i).as_deref() == Some(want) {
            return Ok((
                i,
                &cfg.listeners[i - 1],
                format!("--listener {want}: where the running server is bound"),
            ));
        }
    }
    Err(format!(
        "--listener {want}: no listener has this address; {}",
        allowed()
    ))
}

/// The rule tables of `[content]`, each rule with its line.
fn rule_tables(cfg: &Config) -> Vec<RuleTable> {
    let rules = &cfg.content_rules;
    let mut out = Vec::new();
    let mut add = |place, tables: &crate::intake::content::Tables| {
        for t in &tables.0 {
            let text = std::fs::read_to_string(t.file()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push(RuleTable {
                place,
                file: t.file().to_string(),
                rules: t
                    .rule_lines()
                    .into_iter()
                    .map(|n| {
                        (
                            n,
                            lines
                                .get(n.wrapping_sub(1))
                                .map_or(String::new(), |l| l.trim().to_string()),
                        )
                    })
                    .collect(),
            });
        }
    };
    add("header", &rules.header);
    add("mime_header", &rules.mime_header);
    add("body", &rules.body);
    out
}
