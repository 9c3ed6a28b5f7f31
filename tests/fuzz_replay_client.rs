//! Replays the SMTP client's fuzz corpus (tests/fuzz/corpus/client/) and
//! any saved crash (tests/fuzz/artifacts/client/) through the harness the
//! cargo-fuzz target runs (tests/fuzz/client_harness.rs), on stable, in the
//! normal test run. Apart from tests/fuzz_replay.rs, which replays the
//! server side's targets the same way.

#[path = "fuzz/client_harness.rs"]
mod client_harness;

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

#[test]
fn client_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let corpus = files(&root.join("corpus/client"));
    assert!(corpus.len() >= 10, "corpus of client is missing or tiny");
    let artifacts = files(&root.join("artifacts/client"));
    let mut failed = Vec::new();
    for f in corpus.iter().chain(&artifacts) {
        let input = fs::read(f).expect("read corpus file");
        if panic::catch_unwind(|| client_harness::client(&input)).is_err() {
            eprintln!("^^^ client: input {}", f.display());
            failed.push(f.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "client: {} inputs fail (panic messages above):\n{}",
        failed.len(),
        failed.join("\n")
    );
}
