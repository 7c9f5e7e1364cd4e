//! Tidy checks over the source tree: every module opens with a `//!` line, the pure modules of
//! `domain` (everything but `domain::store`) import no IO crate, the crates depend on each other
//! one way only, and no two modules of a crate import each other (`imports`).

use std::fs;
use std::path::{Path, PathBuf};

#[path = "tidy/imports.rs"]
mod imports;

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
        "bench/src",
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

/// Replay runs the live handlers without their outside effects, by construction: the crates that
/// rebuild read models (`projections`, `replay`) cannot reach NATS — only `api` depends on async-nats
/// and holds the outbox publisher — so nothing a rebuild computes is ever published.
#[test]
fn the_rebuilding_crates_cannot_publish() {
    for krate in ["domain", "projections", "replay"] {
        let manifest = std::fs::read_to_string(workspace_root().join(krate).join("Cargo.toml"))
            .expect("the crate's manifest is readable");
        assert!(
            !manifest.contains("async-nats"),
            "{krate} depends on async-nats: replay could publish"
        );
        for file in sources(&[krate]) {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                !text.contains("async_nats") && !text.contains("cdp_api"),
                "{} reaches NATS or the API crate",
                file.display()
            );
        }
    }
}

/// Consent is enforced by construction on every output: messages reach NATS and the in-process bus
/// (hence `/v1/stream`) only in `api::publish`, after `consent::gate` set their reachable channels, and
/// segment members leave only through `api::segments`' export, which filters by `consent::reachable_in`
/// (the reachability of `consent::reachable_of`, for the documents the export loads).
#[test]
fn every_output_passes_the_consent_gate() {
    let root = workspace_root();
    for file in sources(&["api/src"]) {
        let relative = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = fs::read_to_string(&file).unwrap();
        for sink in ["publish_with_headers(", "bus.send(", ".publish("] {
            if text.contains(sink) {
                assert_eq!(
                    relative, "api/src/publish.rs",
                    "{relative} publishes ({sink}) outside the gate"
                );
            }
        }
        if text.contains("members_page(") {
            assert_eq!(
                relative, "api/src/segments.rs",
                "{relative} exports members outside the filter"
            );
        }
    }
    let publish = fs::read_to_string(root.join("api/src/publish.rs")).unwrap();
    let gate = publish
        .find("consent::gate(")
        .expect("the publisher passes the gate");
    for sink in ["publish_with_headers(", "bus.send("] {
        let at = publish.find(sink).expect("the publisher's sinks");
        assert!(gate < at, "{sink} comes before the consent gate");
    }
    let segments = fs::read_to_string(root.join("api/src/segments.rs")).unwrap();
    assert!(
        segments.contains("consent::reachable_in("),
        "the export filters by consent"
    );
    let consent = fs::read_to_string(root.join("api/src/consent.rs")).unwrap();
    let of = consent
        .find("pub async fn reachable_of(")
        .expect("consent::reachable_of");
    assert!(
        consent[of..].contains("reachable_in(&doc, policy"),
        "reachable_of and the export's reachable_in are one rule"
    );
}

/// The layers of the workspace, lowest first: a crate may depend only on crates of lower layers, so
/// `domain` ← `projections` ← `replay` ← `api`, and only the clients of the service — the benchmark and
/// demo (`cdp-bench`) and the end-to-end tests (`cdp-tests`) — depend on `api`; nothing depends on them.
const LAYERS: [&[&str]; 5] = [
    &["cdp-domain"],
    &["cdp-projections"],
    &["cdp-replay"],
    &["cdp-api"],
    &["cdp-bench", "cdp-tests"],
];

/// The package name of a manifest and the names of the packages it depends on (any dependency table:
/// `name.workspace = true`, `name = …`, or a `[dependencies.name]` table).
fn package_and_dependencies(manifest: &str) -> (String, Vec<String>) {
    let mut package = String::new();
    let mut dependencies = Vec::new();
    let mut section = String::new();
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if let Some(header) = line.strip_prefix('[') {
            section = header.trim_end_matches(']').trim().to_owned();
            if let Some((table, name)) = section.rsplit_once("dependencies.") {
                if table.is_empty() || table.ends_with('-') || table.ends_with('.') {
                    dependencies.push(name.trim().to_owned());
                }
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if section == "package" && key.trim() == "name" {
            package = value.trim().trim_matches('"').to_owned();
        } else if section.ends_with("dependencies") {
            let name = key.split('.').next().unwrap_or_default().trim();
            dependencies.push(name.to_owned());
        }
    }
    (package, dependencies)
}

#[test]
fn the_manifest_reader_finds_every_form_of_dependency() {
    let manifest = r#"
[package]
name = "cdp-x" # a comment

[dependencies]
cdp-domain.workspace = true
serde = { version = "1" }

[dev-dependencies]
cdp-api.workspace = true

[target.'cfg(unix)'.dependencies]
rustix = "1"

[dependencies.cdp-replay]
workspace = true
"#;
    let (package, dependencies) = package_and_dependencies(manifest);
    assert_eq!(package, "cdp-x");
    assert_eq!(
        dependencies,
        ["cdp-domain", "serde", "cdp-api", "rustix", "cdp-replay"]
    );
}

#[test]
fn crates_depend_on_lower_layers_only() {
    let root = workspace_root();
    let mut found = Vec::new();
    for entry in fs::read_dir(&root).unwrap().flatten() {
        let Ok(manifest) = fs::read_to_string(entry.path().join("Cargo.toml")) else {
            continue;
        };
        let (package, dependencies) = package_and_dependencies(&manifest);
        let layer_of = |name: &str| LAYERS.iter().position(|layer| layer.contains(&name));
        let layer = layer_of(&package)
            .unwrap_or_else(|| panic!("{package} is in no layer of tidy.rs's LAYERS: place it"));
        for dependency in dependencies.iter().filter(|d| d.starts_with("cdp-")) {
            let below = layer_of(dependency).is_some_and(|l| l < layer);
            assert!(
                below,
                "{package} depends on {dependency}: crates depend only on lower layers ({LAYERS:?})"
            );
        }
        found.push(package);
    }
    found.sort();
    let mut expected = LAYERS.concat();
    expected.sort_unstable();
    assert_eq!(
        found, expected,
        "the workspace's crates are those of LAYERS"
    );
}
