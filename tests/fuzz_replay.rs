//! Replays the fuzz corpus (tests/fuzz/corpus/<target>/) and any saved crash
//! (tests/fuzz/artifacts/<target>/) through the same harness the cargo-fuzz
//! targets run (tests/fuzz/harness.rs), on stable, in the normal test run.
//! A panic fails the test and names the input file.

#[path = "fuzz/harness.rs"]
mod harness;

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let corpus = files(&root.join("corpus").join(target));
    assert!(
        corpus.len() >= 10,
        "corpus of {target} is missing or tiny ({} files)",
        corpus.len()
    );
    let artifacts = files(&root.join("artifacts").join(target));
    let mut failed = Vec::new();
    for f in corpus.iter().chain(&artifacts) {
        let input = fs::read(f).expect("read corpus file");
        if panic::catch_unwind(|| run(&input)).is_err() {
            eprintln!("^^^ {target}: input {}", f.display());
            failed.push(f.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail (panic messages above):\n{}",
        failed.len(),
        corpus.len() + artifacts.len(),
        failed.join("\n")
    );
}

#[test]
fn command_corpus() {
    replay("command", harness::command);
}

#[test]
fn data_corpus() {
    replay("data", harness::data);
}

#[test]
fn session_corpus() {
    replay("session", harness::session);
}
