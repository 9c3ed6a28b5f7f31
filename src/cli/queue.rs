//! `postern queue list|show|flush|hold|release|delete|requeue`: the
//! queue of the running server, through its control socket. With the
//! server stopped, `list` and `show` read the spool directly and the
//! others say so (exit 69).

use std::path::PathBuf;

use argh::FromArgs;

use crate::control::client::{self, Unreachable};
use crate::control::{Refusal, Request, Target};
use crate::sysexits::{EX_NOPERM, EX_UNAVAILABLE};

/// Inspect and control the mail queue (Postfix's mailq and postsuper).
#[derive(FromArgs)]
#[argh(subcommand, name = "queue")]
pub struct QueueCmd {
    /// configuration file of the server; without it, the embedded default
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// its data directory (overrides data_dir)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    #[argh(subcommand)]
    pub action: QueueAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum QueueAction {
    List(List),
    Show(Show),
    Flush(Flush),
    Hold(Hold),
    Release(Release),
    Delete(Delete),
    Requeue(Requeue),
}

/// List queued messages: ID, size, arrival, sender, each recipient with its
/// last error (`*` being delivered, `!` on hold).
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct List {
    /// print JSON instead of text
    #[argh(switch)]
    pub json: bool,
}

/// Show one message: envelope, headers, state of each recipient.
#[derive(FromArgs)]
#[argh(subcommand, name = "show")]
pub struct Show {
    /// the queue ID
    #[argh(positional)]
    pub id: String,
    /// print JSON instead of text
    #[argh(switch)]
    pub json: bool,
}

/// Try deferred mail now: one message, or all without an ID.
#[derive(FromArgs)]
#[argh(subcommand, name = "flush")]
pub struct Flush {
    /// the queue ID
    #[argh(positional)]
    pub id: Option<String>,
}

/// Put a message (or `all`) on hold: kept, not delivered, until released.
#[derive(FromArgs)]
#[argh(subcommand, name = "hold")]
pub struct Hold {
    /// a queue ID or `all`
    #[argh(positional)]
    pub target: String,
}

/// Release a held message (or `all`) for delivery now.
#[derive(FromArgs)]
#[argh(subcommand, name = "release")]
pub struct Release {
    /// a queue ID or `all`
    #[argh(positional)]
    pub target: String,
}

/// Delete a message (or `all`) from the queue, without a bounce.
#[derive(FromArgs)]
#[argh(subcommand, name = "delete")]
pub struct Delete {
    /// a queue ID or `all`
    #[argh(positional)]
    pub target: String,
}

/// Route a message again from scratch (fresh retry schedule), now.
#[derive(FromArgs)]
#[argh(subcommand, name = "requeue")]
pub struct Requeue {
    /// the queue ID
    #[argh(positional)]
    pub id: String,
}

fn target(s: &str) -> Target {
    if s == "all" {
        Target::All
    } else {
        Target::One(s.to_string())
    }
}

impl QueueAction {
    fn request(&self) -> Request {
        match self {
            QueueAction::List(l) => Request::List { json: l.json },
            QueueAction::Show(s) => Request::Show {
                id: s.id.clone(),
                json: s.json,
            },
            QueueAction::Flush(f) => {
                Request::Flush(f.id.as_deref().map(target).unwrap_or(Target::All))
            }
            QueueAction::Hold(h) => Request::Hold(target(&h.target)),
            QueueAction::Release(r) => Request::Release(target(&r.target)),
            QueueAction::Delete(d) => Request::Delete(target(&d.target)),
            QueueAction::Requeue(r) => Request::Requeue(r.id.clone()),
        }
    }
}

pub fn run(q: QueueCmd) -> i32 {
    let cfg = match super::client_config_for(q.config.as_ref(), q.data_dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let req = q.action.request();
    // Check the request here too: a typo gets its answer without a server.
    if let Err(r) = Request::parse(&req.to_line()) {
        return fail(&r);
    }
    let answer = match client::ask(&cfg.control_socket(), &req, cfg.control.busy_wait.0) {
        Ok(answer) => answer,
        Err(Unreachable::Denied(why)) => Err(Refusal::new(
            EX_NOPERM,
            format!("{why}: only root, postern's user and members of its group may use the control socket"),
        )),
        Err(Unreachable::NotRunning(why)) => {
            let queue = cfg.queue_dir();
            match crate::queue::spool::Spool::owner(&queue) {
                None if !req.changes() => client::offline(&queue, &req),
                None => Err(Refusal::new(
                    EX_UNAVAILABLE,
                    format!("postern is not running (no server holds {}): {why}", queue.display()),
                )),
                Some(pid) if !req.changes() => {
                    eprintln!("postern queue: the server (pid {pid}) does not answer on its control socket ({why}); reading the spool");
                    client::offline(&queue, &req)
                }
                Some(pid) => Err(Refusal::new(
                    EX_UNAVAILABLE,
                    format!("the server (pid {pid}) does not answer on its control socket: {why}"),
                )),
            }
        }
    };
    match answer {
        Ok(body) => {
            print!("{body}");
            0
        }
        Err(r) => fail(&r),
    }
}

fn fail(r: &Refusal) -> i32 {
    eprintln!("postern queue: {}", r.text);
    r.code
}
