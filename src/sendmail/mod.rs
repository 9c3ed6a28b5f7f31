//! sendmail(1), mailq(1) and newaliases(1): what cron, mailx, smartd, a
//! NAS's scripts and PHP call. The one binary answers to those names
//! (symlinks in the image) and to `postern sendmail ...`.
//!
//! A message goes to the running server over its submission socket, as
//! SMTP (the server takes the caller's uid from the socket and names it in
//! `Received:`); with the server down it is kept in the drop directory,
//! which the server picks up when it starts. Nothing needs a set-gid
//! helper. Exit codes follow sysexits(3): 64 usage, 65 bad message, 71 no
//! login name, 75 only when the message could not be kept at all.

pub mod args;
pub mod message;
pub mod submit;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use self::args::{Args, Mode};
use crate::config::Config;
use crate::smtp::address::Address;
use crate::sysexits::{EX_DATAERR, EX_OSERR, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE};

/// The config file sendmail reads: `-C`, else `$POSTERN_CONFIG`, else
/// the appliance's /etc/postern/postern.toml; `None`: the embedded default.
fn config_path(a: &Args) -> Option<PathBuf> {
    a.config
        .clone()
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("POSTERN_CONFIG").map(PathBuf::from))
        .or_else(|| {
            let p = PathBuf::from("/etc/postern/postern.toml");
            p.is_file().then_some(p)
        })
}

/// Runs as sendmail (`mode` from the program's name); the exit code.
pub fn main(mode: Mode, argv: &[String]) -> i32 {
    let a = match args::parse(mode, argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sendmail: {e}\n{}", args::USAGE);
            return EX_USAGE;
        }
    };
    if a.verbose {
        for i in &a.ignored {
            eprintln!("sendmail: ignoring {i}");
        }
    }
    let path = config_path(&a);
    let cfg = match crate::cli::client_config_for(path.as_ref(), None) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let queue = |action: crate::cli::queue::QueueAction| {
        crate::cli::queue::run(crate::cli::queue::QueueCmd {
            config: path.clone(),
            data_dir: Some(cfg.data_dir().to_path_buf()),
            action,
        })
    };
    match a.mode {
        Mode::ListQueue => {
            let code = queue(crate::cli::queue::QueueAction::List(
                crate::cli::queue::List { json: false },
            ));
            waiting_in_drop(&cfg);
            code
        }
        Mode::Flush => queue(crate::cli::queue::QueueAction::Flush(
            crate::cli::queue::Flush { id: None },
        )),
        Mode::NewAliases => new_aliases(path.as_ref()),
        Mode::Verify => {
            eprintln!("sendmail: -bv is not supported by postern");
            EX_USAGE
        }
        Mode::Smtp => smtp_on_stdio(&cfg),
        Mode::Deliver => deliver(&cfg, &a),
    }
}

/// `newaliases`: postern reads the aliases file itself, at start and on
/// reload. The file is checked here first (its errors printed, exit 78,
/// nothing signalled); a running server is told to reload; a stopped one
/// reads it when it starts, which is no error: package scripts run
/// newaliases whether the MTA runs or not.
fn new_aliases(path: Option<&PathBuf>) -> i32 {
    let cfg = match crate::cli::config_for(path, None) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let file = cfg
        .aliases_file()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "no aliases file".into());
    if crate::queue::spool::Spool::owner(&cfg.queue_dir()).is_none() {
        println!("newaliases: {file} is fine; no server is running on {}, it reads the aliases when it starts", cfg.queue_dir().display());
        return 0;
    }
    println!("newaliases: {file} is fine; asking the server to reload");
    crate::cli::reload_running(&cfg)
}

/// `mailq`: messages still in the drop directory (the server was down,
/// or has not picked them up yet), and any set aside as unusable. The
/// directory is not listable by users (mode 1733): only root sees this.
fn waiting_in_drop(cfg: &Config) {
    let dir = cfg.maildrop();
    let count = |d: &std::path::Path| -> Option<usize> {
        let rd = std::fs::read_dir(d).ok()?;
        Some(
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_type().is_ok_and(|t| t.is_file())
                        && !e.file_name().to_string_lossy().starts_with('.')
                })
                .count(),
        )
    };
    match count(&dir) {
        Some(0) | None => {}
        Some(1) => println!(
            "1 message in the drop directory {}, waiting for the server to pick it up",
            dir.display()
        ),
        Some(n) => println!(
            "{n} messages in the drop directory {}, waiting for the server to pick them up",
            dir.display()
        ),
    }
    let aside = submit::set_aside_dir(&dir);
    if let Some(n) = count(&aside).filter(|&n| n > 0) {
        println!(
            "{n} drop file(s) the server could not submit, set aside in {} (its log says why)",
            aside.display()
        );
    }
}

/// The login name of the caller @ origin (Postfix: `$myorigin`).
fn default_sender(cfg: &Config) -> Result<String, i32> {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid).ok().flatten() {
        Some(u) => Ok(format!("{}@{}", u.name, cfg.origin())),
        None => {
            eprintln!("sendmail: uid {uid} has no entry in the password database: give the sender with -f");
            Err(EX_OSERR)
        }
    }
}

/// `user` alone means user@origin, as for Postfix's local submissions.
fn qualify(addr: &str, origin: &str) -> Result<String, String> {
    let a = addr.trim().trim_start_matches('<').trim_end_matches('>');
    let full = if a.contains('@') {
        a.to_string()
    } else {
        format!("{a}@{origin}")
    };
    Address::parse(&full, true)
        .map(|p| p.to_string())
        .map_err(|_| format!("bad address {addr:?}"))
}

fn deliver(cfg: &Config, a: &Args) -> i32 {
    let sender = match &a.sender {
        Some(s) if s.is_empty() => String::new(),
        Some(s) => match qualify(s, cfg.origin()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sendmail: sender: {e}");
                return EX_USAGE;
            }
        },
        None => match default_sender(cfg) {
            Ok(s) => s,
            Err(code) => return code,
        },
    };
    let limit = match cfg.smtp.message_size_limit.0 {
        0 => u64::MAX,
        n => n,
    };
    let mut msg = match message::read(std::io::stdin().lock(), a.ignore_dots, limit) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            eprintln!("sendmail: {e}");
            return EX_DATAERR;
        }
        Err(e) => {
            eprintln!("sendmail: cannot read the message: {e}");
            return EX_DATAERR;
        }
    };
    let mut wanted = a.recipients.clone();
    if a.from_headers {
        let found = message::recipients_from_headers(&msg);
        if found.is_empty() && wanted.is_empty() {
            eprintln!("sendmail: -t: no recipient addresses found in the message header");
            return EX_USAGE;
        }
        wanted.extend(found);
    }
    if wanted.is_empty() {
        eprintln!("sendmail: no recipients given\n{}", args::USAGE);
        return EX_USAGE;
    }
    let mut rcpts: Vec<String> = Vec::new();
    for r in wanted
        .iter()
        .flat_map(|r| r.split(','))
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        match qualify(r, cfg.origin()) {
            Ok(q) if !rcpts.contains(&q) => rcpts.push(q),
            Ok(_) => {}
            Err(e) => {
                eprintln!("sendmail: recipient: {e}");
                return EX_USAGE;
            }
        }
    }
    msg = message::drop_fields(&msg);
    if let Some(name) = &a.full_name {
        msg = message::add_from(
            msg,
            if sender.is_empty() {
                "MAILER-DAEMON"
            } else {
                &sender
            },
            name,
        );
    }
    msg = message::split_long_lines(&msg);
    let socket = cfg.submit_socket();
    match UnixStream::connect(&socket) {
        Ok(stream) => {
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(300)));
            match submit::smtp(&stream, &sender, &rcpts, &msg, a.verbose) {
                Ok(id) => {
                    if a.verbose {
                        eprintln!("sendmail: queued as {id}");
                    }
                    0
                }
                Err(submit::SubmitError::Refused(r)) if r.code >= 500 => {
                    eprintln!(
                        "sendmail: the mail system refused the message: {} {}",
                        r.code, r.text
                    );
                    EX_DATAERR
                }
                // A temporary refusal or a broken conversation: keep it.
                Err(e) => keep(
                    cfg,
                    &sender,
                    rcpts,
                    msg,
                    a.verbose,
                    &format!("the server answered {e}"),
                ),
            }
        }
        Err(e) => keep(
            cfg,
            &sender,
            rcpts,
            msg,
            a.verbose,
            &format!("{}: {e}", socket.display()),
        ),
    }
}

/// The server cannot take it now: the drop directory keeps it.
fn keep(
    cfg: &Config,
    sender: &str,
    rcpts: Vec<String>,
    message: Vec<u8>,
    verbose: bool,
    why: &str,
) -> i32 {
    let dir = cfg.maildrop();
    let d = submit::Dropped {
        sender: sender.to_string(),
        rcpts,
        message,
    };
    match submit::drop_file(&dir, &d) {
        Ok(p) => {
            if verbose {
                eprintln!(
                    "sendmail: the server is not taking mail ({why}); kept in {} for it",
                    p.display()
                );
            }
            0
        }
        Err(e) => {
            eprintln!("sendmail: the server is not taking mail ({why}), and the message cannot be kept in {}: {e}", dir.display());
            EX_TEMPFAIL
        }
    }
}

/// `-bs`: SMTP on standard input and output, relayed to the server.
fn smtp_on_stdio(cfg: &Config) -> i32 {
    let socket = cfg.submit_socket();
    let stream = match UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) => {
            println!(
                "421 4.3.0 mail system not running ({}: {e})\r",
                socket.display()
            );
            return EX_UNAVAILABLE;
        }
    };
    let mut from_server = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sendmail: {e}");
            return EX_OSERR;
        }
    };
    let out = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut std::io::stdout().lock());
    });
    let mut to_server = &stream;
    let mut input = std::io::stdin().lock();
    let mut buf = [0u8; 8192];
    loop {
        match input.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if std::io::Write::write_all(&mut to_server, &buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = out.join();
    0
}
