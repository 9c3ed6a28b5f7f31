//! postern's entry point: argument dispatch only.

fn main() {
    // Commands that print (help, config, queue list) end quietly when the
    // reader goes away (`postern config example | head`), as Unix tools
    // do. The server keeps SIGPIPE ignored: a pipe command that exits
    // early must not take the daemon with it.
    if std::env::args().nth(1).as_deref() != Some("serve") {
        // SAFETY: single-threaded at this point; restoring a default
        // disposition installs no handler.
        unsafe {
            let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
        }
    }
    let cli: postern::cli::Cli = argh::from_env();
    std::process::exit(postern::cli::run(cli));
}
