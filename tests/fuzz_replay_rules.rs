//! Replays the header and body rules' fuzz corpus (tests/fuzz/corpus/rules/)
//! and any saved crash (tests/fuzz/artifacts/rules/) through the harness the
//! cargo-fuzz target runs (tests/fuzz/rules_harness.rs), on stable, in the
//! normal test run. A panic fails the test and names the input file.

#[path = "fuzz/rules_harness.rs"]
mod rules_harness;

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
fn rules_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let corpus = files(&root.join("corpus/rules"));
    assert!(corpus.len() >= 10, "corpus of rules is missing or tiny");
    let artifacts = files(&root.join("artifacts/rules"));
    let mut failed = Vec::new();
    for f in corpus.iter().chain(&artifacts) {
        let input = fs::read(f).expect("read corpus file");
        if panic::catch_unwind(|| rules_harness::rules(&input)).is_err() {
            eprintln!("^^^ rules: input {}", f.display());
            failed.push(f.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "rules: {} of {} inputs fail (panic messages above):\n{}",
        failed.len(),
        corpus.len() + artifacts.len(),
        failed.join("\n")
    );
}
