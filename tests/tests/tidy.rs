//! Tidy checks over the source tree: every module opens with a `//!` line, and the pure modules of
//! `domain` (everything but `domain::store`) import no IO crate.

use std::fs;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources(crate_dirs: &[&str]) -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in crate_dirs {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(
        !files.is_empty(),
        "no sources found under {}",
        root.display()
    );
    files
}

#[test]
fn every_module_opens_with_a_doc_line() {
    let missing: Vec<String> = sources(&[
        "domain/src",
        "projections/src",
        "replay/src",
        "api/src",
        "tests/src",
        "tests/tests",
    ])
    .into_iter()
    .filter(|path| {
        let text = fs::read_to_string(path).unwrap_or_default();
        !text.trim_start().starts_with("//!")
    })
    .map(|p| p.display().to_string())
    .collect();
    assert!(
        missing.is_empty(),
        "modules without a `//!` line: {missing:#?}"
    );
}

/// The lines of `text` that use an IO crate.
fn io_imports(text: &str) -> Vec<String> {
    const IO_CRATES: [&str; 5] = ["tokio", "sqlx", "axum", "async_nats", "reqwest"];
    text.lines()
        .filter(|line| {
            let code = line.split("//").next().unwrap_or_default();
            IO_CRATES.iter().any(|krate| {
                code.contains(&format!("{krate}::"))
                    || code.contains(&format!("use {krate}"))
                    || code.contains(&format!("#[{krate}"))
            })
        })
        .map(|line| line.trim().to_owned())
        .collect()
}

#[test]
fn pure_domain_modules_import_no_io_crate() {
    let store = workspace_root().join("domain/src/store");
    let mut offenders = Vec::new();
    for path in sources(&["domain/src"]) {
        if path.starts_with(&store) {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap_or_default();
        for line in io_imports(&text) {
            offenders.push(format!("{}: {line}", path.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "pure domain modules import IO crates: {offenders:#?}"
    );
}

#[test]
fn the_import_check_recognises_io_and_ignores_comments() {
    assert_eq!(io_imports("use tokio::sync::Mutex;").len(), 1);
    assert_eq!(io_imports("let p = sqlx::query(\"x\");").len(), 1);
    assert!(io_imports("// tokio:: is mentioned in a comment\nuse serde::Serialize;").is_empty());
}
