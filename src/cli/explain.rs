//! `postern explain RCPT`: where mail for RCPT would go, and why,
//! without sending anything (see src/explain).

use std::net::IpAddr;
use std::path::PathBuf;

use argh::FromArgs;

use crate::explain::{self, Request};
use crate::sysexits::EX_USAGE;

/// Explain what would happen to mail for RCPT: whether it is accepted
/// from that client on that listener (and which rule decided), how
/// aliases expand (each row or file line), where each final recipient
/// goes (Maildir and quota, pipe command, SMTP route with fallbacks, TLS,
/// credentials and MX hosts), and which content filter and header rules
/// apply. Nothing is sent. Exit status: 0 accepted, 1 refused, 64 bad
/// usage, 78 configuration error.
#[derive(FromArgs)]
#[argh(subcommand, name = "explain")]
pub struct ExplainCmd {
    /// the recipient address
    #[argh(positional)]
    pub rcpt: String,
    /// the envelope sender (default: the null sender <>)
    #[argh(option)]
    pub from: Option<String>,
    /// the client's IP address (default: 127.0.0.1)
    #[argh(option)]
    pub client: Option<String>,
    /// the client logged in as this user (the password is not checked)
    #[argh(option)]
    pub auth: Option<String>,
    /// the listener the mail arrives on: its index from 1 in config order
    /// (listeners have no names; the index is the first column of
    /// data_dir/listening), its configured address, or the address the
    /// running server is bound to (default: the first listener)
    #[argh(option)]
    pub listener: Option<String>,
    /// print one JSON object instead of text
    #[argh(switch)]
    pub json: bool,
    /// configuration file; without it, the embedded default
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// data directory (overrides data_dir)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// do not look up MX records and host addresses
    #[argh(switch)]
    pub no_dns: bool,
}

pub fn run(c: ExplainCmd) -> i32 {
    let client = match c.client.as_deref().unwrap_or("127.0.0.1").parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => {
            eprintln!(
                "postern explain: --client {:?} is not an IP address; allowed: an IPv4 or IPv6 address such as 192.0.2.10",
                c.client.unwrap_or_default()
            );
            return EX_USAGE;
        }
    };
    if c.rcpt.trim().is_empty() {
        eprintln!("postern explain: the recipient is empty; allowed: an address such as alice@example.test");
        return EX_USAGE;
    }
    let cfg = match super::config_for(c.config.as_ref(), c.data_dir) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let req = Request {
        recipient: c.rcpt,
        from: c.from.unwrap_or_default(),
        client,
        auth: c.auth,
        listener: c.listener,
        dns: !c.no_dns,
    };
    match explain::explain(&cfg, &req) {
        Ok(report) => {
            print!("{}", if c.json { report.json() } else { report.text() });
            if report.accepted {
                0
            } else {
                1
            }
        }
        Err(explain::Failure(code, msg)) => {
            eprintln!("postern explain: {msg}");
            code
        }
    }
}
