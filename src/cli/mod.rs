//! The command line: `postern serve`, `postern check-config`, `postern
//! config example|default`, `postern reload`. Only argument handling and
//! exit codes live here; the work is done by the library modules.

pub mod convert;
pub mod dkim;
pub mod explain;
mod password_input;
pub mod queue;
pub mod status;
pub mod sync;
pub mod users;

use std::path::{Path, PathBuf};

use argh::FromArgs;

use crate::config::{self, Config};
use crate::server;
use crate::sysexits::{EX_CONFIG, EX_UNAVAILABLE, EX_USAGE};

/// postern: a small mail transfer agent.
#[derive(FromArgs)]
pub struct Cli {
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum Command {
    Serve(Serve),
    CheckConfig(CheckConfig),
    Config(ConfigCmd),
    Reload(Reload),
    User(users::UserCmd),
    Domain(users::DomainCmd),
    Alias(users::AliasCmd),
    Queue(queue::QueueCmd),
    Status(status::StatusCmd),
    Sync(sync::SyncCmd),
    Dkim(dkim::DkimCmd),
    Explain(explain::ExplainCmd),
    Convert(convert::ConvertCmd),
}

/// Tell the running server to reload its configuration (SIGHUP).
#[derive(FromArgs)]
#[argh(subcommand, name = "reload")]
pub struct Reload {
    /// configuration file of that server; without it, the embedded default
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// its data directory (overrides data_dir)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// an image's root directory: the configuration is
    /// DIR/etc/postern/postern.toml unless --config, and every path in
    /// it is taken under DIR
    #[argh(option)]
    pub root: Option<PathBuf>,
}

/// Run the mail server (SMTP in, queue, delivery).
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
pub struct Serve {
    /// configuration file; without it, the embedded default is used
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// directory for the queue, the user directory and mailboxes
    /// (overrides data_dir)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// an image's root directory: the configuration is
    /// DIR/etc/postern/postern.toml unless --config, and every path in
    /// it is taken under DIR
    #[argh(option)]
    pub root: Option<PathBuf>,
}

/// Check a configuration file and report every problem in it.
#[derive(FromArgs)]
#[argh(subcommand, name = "check-config")]
pub struct CheckConfig {
    /// the file to check
    #[argh(positional)]
    pub file: PathBuf,
    /// an image's root directory: every path in the file is taken under it
    #[argh(option)]
    pub root: Option<PathBuf>,
}

/// Print configuration: `example` (every key, annotated) or `default`
/// (what serve runs without --config).
#[derive(FromArgs)]
#[argh(subcommand, name = "config")]
pub struct ConfigCmd {
    /// what to print: example or default
    #[argh(positional)]
    pub what: String,
}

fn print_errors(errors: &[config::ConfigError]) {
    for e in errors {
        eprintln!("{e}");
    }
    eprintln!("postern: {} configuration error(s)", errors.len());
}

/// The configuration file `--config` and `--root` name: `--config` as
/// given, else the image's /etc/postern/postern.toml, else none (the
/// embedded default).
pub fn config_path(config: Option<&PathBuf>, root: Option<&Path>) -> Option<PathBuf> {
    config
        .cloned()
        .or_else(|| root.map(|r| r.join("etc/postern/postern.toml")))
}

fn load(path: Option<&PathBuf>, root: Option<&Path>) -> Result<Config, i32> {
    let loaded = match config_path(path, root) {
        None => Config::embedded(),
        Some(p) => Config::load_file_under(&p, root),
    };
    loaded.map_err(|errs| {
        print_errors(&errs);
        EX_CONFIG
    })
}

/// The config a client command (`postern queue`) acts on: not the
/// server's files, which the user may not be able to read.
pub fn client_config_for(
    config: Option<&PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<Config, i32> {
    let loaded = match config {
        None => Config::embedded_client(),
        Some(p) => Config::load_client(p),
    };
    let mut cfg = loaded.map_err(|errs| {
        print_errors(&errs);
        EX_CONFIG
    })?;
    if let Some(d) = data_dir {
        cfg.set_data_dir(d);
    }
    cfg.absolutize();
    Ok(cfg)
}

/// The config a command acts on: `--config` or the embedded default, with
/// `--data-dir` applied.
pub fn config_for(config: Option<&PathBuf>, data_dir: Option<PathBuf>) -> Result<Config, i32> {
    config_under(config, data_dir, None)
}

/// [`config_for`] with `--root` ([`config_path`], [`Config::reroot`]).
pub fn config_under(
    config: Option<&PathBuf>,
    data_dir: Option<PathBuf>,
    root: Option<&Path>,
) -> Result<Config, i32> {
    let mut cfg = load(config, root)?;
    if let Some(d) = data_dir {
        cfg.set_data_dir(d);
    }
    cfg.absolutize();
    Ok(cfg)
}

/// Commands that write the server's files (`postern sync`, `user`,
/// `domain`, `alias`), run as root with `[main] user` set, become that
/// user first, as the server does: what they write stays the server's.
pub fn as_service_user(cmd: &str, cfg: &Config) -> Result<(), i32> {
    match crate::privs::drop_to(cfg.main.user.as_deref(), |_| false) {
        Ok(_) => Ok(()),
        Err(e) => {
            eprintln!("postern {cmd}: {}: user: {e}", cfg.source);
            Err(crate::sysexits::EX_NOPERM)
        }
    }
}

fn reload(r: Reload) -> i32 {
    let cfg = match config_under(r.config.as_ref(), r.data_dir, r.root.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    reload_running(&cfg)
}

/// Sends SIGHUP to the server running on `cfg`'s queue.
pub fn reload_running(cfg: &Config) -> i32 {
    let Some(pid) = crate::queue::spool::Spool::owner(&cfg.queue_dir()) else {
        eprintln!(
            "postern reload: no server is running on {}",
            cfg.queue_dir().display()
        );
        return EX_UNAVAILABLE;
    };
    match nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    ) {
        Ok(()) => {
            println!("postern reload: sent SIGHUP to {pid}");
            0
        }
        Err(e) => {
            eprintln!("postern reload: cannot signal {pid}: {e}");
            EX_UNAVAILABLE
        }
    }
}

/// Runs the command; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Reload(r) => reload(r),
        Command::User(u) => users::user(u),
        Command::Domain(d) => users::domain(d),
        Command::Alias(a) => users::alias(a),
        Command::Queue(q) => queue::run(q),
        Command::Status(s) => status::run(s),
        Command::Sync(s) => sync::run(s),
        Command::Dkim(d) => dkim::run(d),
        Command::Explain(e) => explain::run(e),
        Command::Convert(c) => convert::run(c),
        Command::Serve(s) => {
            let mut cfg = match load(s.config.as_ref(), s.root.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Some(d) = s.data_dir {
                cfg.set_data_dir(d);
            }
            match server::serve(cfg) {
                Ok(()) => 0,
                Err(server::Fatal(code, msg)) => {
                    eprintln!("postern: {msg}");
                    code
                }
            }
        }
        Command::CheckConfig(c) => match Config::load_file_under(&c.file, c.root.as_deref()) {
            Ok(_) => {
                println!("{}: ok", c.file.display());
                0
            }
            Err(errs) => {
                print_errors(&errs);
                EX_CONFIG
            }
        },
        Command::Config(c) => match c.what.as_str() {
            "example" => {
                print!("{}", config::example::render());
                0
            }
            "default" => {
                print!("{}", config::EMBEDDED_DEFAULT);
                0
            }
            other => {
                eprintln!("postern config: unknown {other:?}; allowed: example, default");
                EX_USAGE
            }
        },
    }
}
