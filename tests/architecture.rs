//! Keeps the module boundaries of STYLE.md honest: the SMTP core stays
//! pure, only the SQLite module runs SQL, only the config module parses
//! TOML, only the spool builds queue paths.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap()
                .display()
                .to_string();
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

fn all() -> Vec<(String, String)> {
    let mut v = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut v);
    v
}

/// Code lines only: comments may mention anything.
fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn smtp_core_is_pure() {
    for (file, text) in all().iter().filter(|(f, _)| f.starts_with("src/smtp/")) {
        let code = code(text);
        for banned in [
            "smol",
            "TcpStream",
            "TcpListener",
            "UdpSocket",
            "std::fs",
            "SystemTime::now",
            "Instant::now",
            "crate::clock",
        ] {
            assert!(
                !code.contains(banned),
                "{file} uses {banned}: the SMTP core must stay pure"
            );
        }
    }
}

#[test]
fn only_sqlite_module_runs_sql() {
    for (file, text) in all() {
        if !file.starts_with("src/directory/sqlite/") {
            assert!(
                !code(&text).contains("rusqlite"),
                "{file} uses rusqlite: SQL belongs in src/directory/sqlite/"
            );
        }
    }
}

#[test]
fn only_config_parses_toml() {
    for (file, text) in all() {
        if !file.starts_with("src/config/") {
            assert!(
                !code(&text).contains("toml::"),
                "{file} uses toml: parsing belongs in src/config/"
            );
        }
    }
}

#[test]
fn only_spool_builds_queue_paths() {
    for (file, text) in all() {
        if !file.starts_with("src/queue/spool/") {
            let c = code(&text);
            for p in [
                "\"incoming\"",
                "\"messages\"",
                "\"corrupt\"",
                "join(\"state\")",
            ] {
                assert!(
                    !c.contains(p),
                    "{file} builds the queue path {p}: only src/queue/spool/ may"
                );
            }
        }
    }
}

#[test]
fn files_stay_small() {
    // Test-vector files (`tests.rs`) are data more than code.
    for (file, text) in all().into_iter().filter(|(f, _)| !f.ends_with("/tests.rs")) {
        let n = text.lines().count();
        assert!(
            n <= 700,
            "{file} has {n} lines: split it (STYLE.md: split before ~600)"
        );
    }
}
