//! postern's entry point: argument dispatch only. Invoked as `sendmail`,
//! `mailq` or `newaliases` (symlinks), or as `postern sendmail ...`, it is
//! those programs, whose flags argh cannot parse.

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    few_malloc_arenas();
    // Commands that print (help, config, queue list) end quietly when the
    // reader goes away (`postern config example | head`), as Unix tools
    // do. The server keeps SIGPIPE ignored: a pipe command that exits
    // early must not take the daemon with it.
    if argv.get(1).map(String::as_str) != Some("serve") {
        // SAFETY: single-threaded at this point; restoring a default
        // disposition installs no handler.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            );
        }
    }
    use postern::sendmail::{self, args::Mode};
    if let Some(mode) = argv.first().and_then(|a| sendmail::args::mode_of_name(a)) {
        std::process::exit(sendmail::main(mode, &argv[1..]));
    }
    if argv.get(1).map(String::as_str) == Some("sendmail") {
        std::process::exit(sendmail::main(Mode::Deliver, &argv[2..]));
    }
    let cli: postern::cli::Cli = argh::from_env();
    std::process::exit(postern::cli::run(cli));
}

/// glibc's malloc gives each thread that allocates under contention an
/// arena of its own, up to eight per core, each with its own heap pages:
/// with the blocking threads of a loaded server that was up to 1 MB of
/// peak RSS, varying from run to run with how many threads met at once.
/// Two arenas keep the peak low and steady; the threads hold malloc's
/// lock only briefly. musl has no per-thread arenas.
fn few_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: called first thing in main, before any other thread exists;
    // mallopt only sets a tunable.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}
