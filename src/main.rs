//! postern's entry point: argument dispatch only.

fn main() {
    let cli: postern::cli::Cli = argh::from_env();
    std::process::exit(postern::cli::run(cli));
}
