//! `postern status`: what the running server says about itself (version,
//! uptime, listeners, queue, last sync, each route's last error, the
//! certificate), over its control socket. Exit 0 when it answered, 69
//! (EX_UNAVAILABLE) when it is not running, so monitoring can use it.

use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use crate::control::client::{self, Unreachable};
use crate::control::Request;
use crate::sysexits::{EX_NOPERM, EX_UNAVAILABLE};

/// Show the running server's state; exit 69 when it is not running.
#[derive(FromArgs)]
#[argh(subcommand, name = "status")]
pub struct StatusCmd {
    /// configuration file of the server; without it, the embedded default
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// its data directory (overrides data_dir)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// print JSON instead of text
    #[argh(switch)]
    pub json: bool,
}

pub fn run(s: StatusCmd) -> i32 {
    let cfg = match super::client_config_for(s.config.as_ref(), s.data_dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let req = Request::Status { json: s.json };
    match client::ask(&cfg.control_socket(), &req, Duration::from_secs(5)) {
        Ok(Ok(body)) => {
            print!("{body}");
            0
        }
        Ok(Err(r)) => {
            eprintln!("postern status: {}", r.text);
            r.code
        }
        Err(Unreachable::Denied(why)) => {
            eprintln!(
                "postern status: {why}: only root, postern's user and members of its group may ask"
            );
            EX_NOPERM
        }
        Err(Unreachable::NotRunning(why)) => {
            let queue = cfg.queue_dir();
            match crate::queue::spool::Spool::owner(&queue) {
                Some(pid) => eprintln!("postern status: the server (pid {pid}) does not answer on its control socket: {why}"),
                None => eprintln!("postern status: postern is not running (no server holds {}): {why}", queue.display()),
            }
            EX_UNAVAILABLE
        }
    }
}
